"""Datasets beyond the in-memory four, from generated files in their real formats: CIFAR-100 (pickles), an
ImageFolder tree of PNGs, and any torchvision.datasets class by name."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from prunelab import data
from prunelab.errors import ConfigError

from fakedata import write_cifar100, write_image_folder, write_mnist
from test_data import CONF, _assert_same_set, _pixels, no_download  # noqa: F401  (no_download: autouse fixture)


def _cfg(name: str, **overrides):
    return OmegaConf.merge(OmegaConf.load(CONF / f"{name}.yaml"), overrides)


def test_cifar100_loads_pickled_files_with_fine_labels(tmp_path):
    files = write_cifar100(tmp_path, n_train=40, n_test=12)
    s = data.build(_cfg("cifar100", root=str(tmp_path), val_fraction=0.25))
    assert s.input_shape == (3, 32, 32) and s.num_classes == 100 and s.name == "cifar100" and s.in_memory
    assert s.mean == data.CIFAR100_MEAN and s.std == data.CIFAR100_STD
    assert (len(s.train), len(s.val), len(s.test)) == (30, 10, 12)
    images = files["train"]["data"].reshape(-1, 3, 32, 32)
    x_tr = torch.cat([_pixels(s.train.tensors[0], s), _pixels(s.val.tensors[0], s)])
    y_tr = torch.cat([s.train.tensors[1], s.val.tensors[1]])
    _assert_same_set(x_tr, y_tr, images, np.array(files["train"]["fine_labels"]))  # fine, not coarse, labels
    test = files["test"]
    assert torch.equal(_pixels(s.test.tensors[0], s), torch.from_numpy(test["data"].reshape(-1, 3, 32, 32)))
    assert s.test.tensors[1].tolist() == test["fine_labels"]
    assert isinstance(s.train_transform, data.RandomCropFlip)
    # streamed: the same samples, bitwise, read one at a time
    st = data.build(_cfg("cifar100", root=str(tmp_path), val_fraction=0.25, in_memory=False))
    assert not st.in_memory and isinstance(st.test, data.SampleDataset)
    for split in ("train", "val", "test"):
        xs = torch.stack([getattr(st, split)[i][0] for i in range(len(getattr(st, split)))])
        assert torch.equal(xs, getattr(s, split).tensors[0]), split
        assert torch.equal(getattr(st, split).targets, getattr(s, split).tensors[1])


def test_cifar100_missing_files_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^dataset.root=.*no cifar100 files there \(expected "
                                          r"cifar-100-python/\{train,test,meta\}\); set dataset.download=true"):
        data.build(_cfg("cifar100", root=str(tmp_path)))


def _by_hand(path, resize: int, crop: int, mean, std) -> torch.Tensor:
    """torchvision's own functional ops on the decoded PNG (a PIL image, as ImageFolder's loader gives): shorter
    side to ``resize``, centre ``crop``, then pixels / 255, then (x - mean) / std."""
    import torchvision.transforms.v2.functional as F

    img = F.center_crop(F.resize(Image.open(path).convert("RGB"), resize, antialias=True), [crop, crop])
    img = F.pil_to_tensor(img)
    return (img.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def test_imagefolder_loads_a_png_tree(tmp_path):
    tree = write_image_folder(tmp_path, classes=("cat", "ant", "bee"), per_class={"train": 5, "val": 2})
    cfg = _cfg("imagefolder", root=str(tmp_path), image_size=16, resize=18, num_classes=3, val_fraction=0.2)
    s = data.build(cfg)
    assert s.num_classes == 3 and s.input_shape == (3, 16, 16) and s.mean == data.IMAGENET_MEAN
    assert not s.in_memory and s.per_sample  # random crops: streamed
    assert (len(s.train), len(s.val), len(s.test)) == (12, 3, 6)
    assert s.train.base.classes == ["ant", "bee", "cat"]  # sorted folder names are the classes
    # the test split is val/, in ImageFolder's order; each image through Resize + CenterCrop by hand
    for i, (path, label, _) in enumerate(tree["val"]):
        x, y = s.test[i]
        assert int(y) == label and x.shape == (3, 16, 16)
        assert torch.allclose(x, _by_hand(path, 18, 16, data.IMAGENET_MEAN, data.IMAGENET_STD), atol=1e-6)
    # train + val are train/, split by the seed; train samples are random crops of the right size
    paths = {str(p) for p, _, _ in tree["train"]}
    used = [s.train.base.samples[int(j)][0] for j in torch.cat([s.train.indices, s.val.indices])]
    assert set(used) == paths and len(used) == len(paths)
    assert s.train[(7, 0)][0].shape == (3, 16, 16)
    assert torch.equal(s.train[(7, 0)][0], s.train[(7, 0)][0]) and not torch.equal(s.train[(7, 0)][0], s.train[(8, 0)][0])
    # without random train transforms a small tree is held in memory: the eval pipeline's tensors
    m = data.build(OmegaConf.merge(cfg, {"train_transforms": []}))
    assert m.in_memory and torch.equal(m.test.tensors[0], torch.stack([s.test[i][0] for i in range(6)]))
    assert torch.equal(m.train.tensors[0], torch.stack([s.train.plain()[i][0] for i in range(12)]))


def test_an_unreadable_image_is_one_line_naming_it(tmp_path):
    """A corrupt file in the tree: one ConfigError naming the file, when the tree is loaded into memory and when a
    DataLoader worker reads it (torch re-raises a worker's error in the main process: it stays a ConfigError)."""
    tree = write_image_folder(tmp_path, classes=("ant", "bee"), per_class={"train": 4, "val": 2})
    bad = tree["val"][1][0]
    Path(bad).write_bytes(b"garbage\n")
    want = rf"^dataset.root='{bad}': image files PIL can read \(UnidentifiedImageError: cannot identify image file"
    cfg = _cfg("imagefolder", root=str(tmp_path), image_size=16, resize=18, num_classes=2)
    with pytest.raises(ConfigError, match=want):
        data.build(OmegaConf.merge(cfg, {"train_transforms": []}))  # in memory: every image decoded at once
    streamed = data.build(cfg)
    assert not streamed.in_memory
    loader = torch.utils.data.DataLoader(streamed.test, batch_size=2, num_workers=1)
    with pytest.raises(ConfigError, match=want) as err:
        list(loader)
    assert len(str(err.value).splitlines()) == 1


def test_imagefolder_bad_trees_are_one_line(tmp_path):
    write_image_folder(tmp_path, classes=("x", "y"))
    with pytest.raises(ConfigError, match=r"^dataset.num_classes=5: the imagefolder data has 2 classes$"):
        data.build(_cfg("imagefolder", root=str(tmp_path), num_classes=5))
    with pytest.raises(ConfigError, match=r"^dataset.root=.*: a folder with test/<class>/<image> inside"):
        data.build(_cfg("imagefolder", root=str(tmp_path), num_classes=2, test_dir="test"))
    with pytest.raises(ConfigError, match=r"^dataset.eval_transforms=.*input_shape \[3, 64, 64\]"):
        data.build(_cfg("imagefolder", root=str(tmp_path), num_classes=2, eval_transforms=[]))
    write_image_folder(tmp_path / "z", classes=("z",), per_class={"val": 1})  # val/ with a class train/ lacks
    (tmp_path / "z" / "val" / "z").rename(tmp_path / "val" / "z")
    with pytest.raises(ConfigError, match=r"^dataset.test_dir='val': a folder with the classes of train/ "
                                          r"\(2 there, 3 here; in one only: z\)$"):
        data.build(_cfg("imagefolder", root=str(tmp_path), num_classes=2))


def test_any_torchvision_dataset_by_name(tmp_path):
    write_mnist(tmp_path, "MNIST", gz=False)
    cfg = _cfg("torchvision", root=str(tmp_path), cls="MNIST", input_shape=[1, 28, 28], num_classes=10,
               mean=[0.1307], std=[0.3081], val_fraction=0.2, split_seed=3)
    assert cfg.train_kwargs is None and cfg.test_kwargs is None  # the class's own split argument: train=True/False
    s = data.build(cfg)
    ref = data.build({"name": "mnist", "root": str(tmp_path), "val_fraction": 0.2, "split_seed": 3})
    assert s.in_memory and s.name == "torchvision.MNIST"
    for split in ("train", "val", "test"):  # the same split and values as the mnist builder
        for a, b in zip(getattr(s, split).tensors, getattr(ref, split).tensors):
            assert torch.equal(a, b), split
    with pytest.raises(ConfigError, match=r"^dataset.cls='Nope': a torchvision.datasets class"):
        data.build(OmegaConf.merge(cfg, {"cls": "Nope"}))
    with pytest.raises(ConfigError, match=r"^dataset.train_kwargs=.*arguments MNIST accepts"):
        cfg.train_kwargs = {"split": "train"}
        data.build(cfg)


def test_a_torchvision_class_is_opened_by_its_own_split_argument():
    """train=True/False where the class takes ``train`` (CIFAR, MNIST), split='train'/'test' where it takes
    ``split`` (SVHN, STL10); a mapping on the command line replaces the default (a CIFAR-style ``{train: true}``
    used to merge into SVHN's ``{split: train}`` and be refused)."""
    import torchvision.datasets as tvd
    from hydra import compose, initialize_config_module

    from prunelab.data.tv import split_kwargs

    assert split_kwargs(tvd.CIFAR10, "train") == {"train": True}
    assert split_kwargs(tvd.MNIST, "test") == {"train": False}
    assert split_kwargs(tvd.SVHN, "test") == {"split": "test"}
    assert split_kwargs(tvd.STL10, "train") == {"split": "train"}
    with initialize_config_module("prunelab.conf", version_base=None):
        cifar = compose("config", overrides=["dataset=torchvision", "dataset.cls=CIFAR10", "dataset.train_kwargs="
                                             "{train: true}", "dataset.test_kwargs={train: false}"])
        stl = compose("config", overrides=["dataset=torchvision", "dataset.cls=STL10",
                                           "dataset.train_kwargs={split: train, folds: 0}"])
    assert OmegaConf.to_container(cifar.dataset.train_kwargs) == {"train": True}
    assert OmegaConf.to_container(stl.dataset.train_kwargs) == {"split": "train", "folds": 0}


def test_imagefolder_in_grayscale_and_transform_failures_are_one_line(tmp_path):
    """``channels: 1`` decodes the tree to grayscale (one channel, normalised by ImageNet's averaged constants);
    a transform that fails on the first image, or a shape the model does not take, is one line naming the
    transforms and how to fix it; a test folder with other classes names them."""
    tree = write_image_folder(tmp_path, classes=("ant", "bee"), per_class={"train": 4, "val": 2})
    cfg = _cfg("imagefolder", root=str(tmp_path), image_size=16, resize=18, num_classes=2, channels=1)
    s = data.build(cfg)
    assert s.input_shape == (1, 16, 16) and s.mean == (pytest.approx(0.449),) and len(s.std) == 1
    path, _, _ = tree["val"][0]
    import torchvision.transforms.v2.functional as F

    gray = F.pil_to_tensor(F.center_crop(F.resize(Image.open(path).convert("L"), 18, antialias=True), [16, 16]))
    assert torch.allclose(s.test[0][0], (gray.float() / 255 - s.mean[0]) / s.std[0], atol=1e-6)
    with pytest.raises(ConfigError, match=r"^dataset.mean=\[0.5, 0.5, 0.5\]: a list of 1 numbers"):
        data.build(OmegaConf.merge(cfg, {"mean": [0.5, 0.5, 0.5]}))
    with pytest.raises(ConfigError, match=r"^dataset.input_shape=\[2, 16, 16\]: \[1 or 3, H, W\]"):
        data.build(OmegaConf.merge(cfg, {"channels": 2}))
    rgb = _cfg("imagefolder", root=str(tmp_path), image_size=16, resize=18, num_classes=2)
    cases = [({"eval_transforms": [{"Resize": {"size": -3}}]}, "eval_transforms", "ValueError"),
             ({"train_transforms": [{"RandomResizedCrop": {"size": 16, "scale": [0.9, 0.1]}}]}, "train_transforms",
              "RuntimeError"),
             ({"train_transforms": [{"Normalize": {"mean": [0.5], "std": [0.5]}}]}, "train_transforms", "TypeError")]
    for override, key, kind in cases:
        with pytest.raises(ConfigError, match=rf"^dataset.{key}=.*: transforms that run on the .* split's images.*"
                                              rf"\({kind}: ") as err:
            data.build(OmegaConf.merge(rgb, override))
        assert len(str(err.value).splitlines()) == 1
    with pytest.raises(ConfigError, match=r"^dataset.eval_transforms=.*\(ValueError: 1-channel images, 3 mean/std "
                                          r"constants: set the channels \(dataset.channels for imagefolder, else "
                                          r"dataset.input_shape\), mean and std to match\)$"):
        data.build(OmegaConf.merge(rgb, {"eval_transforms": [{"Grayscale": {}}, {"Resize": {"size": 16}},
                                                              {"CenterCrop": {"size": 16}}],
                                         "train_transforms": []}))
    for key, value, allowed in (("resize", 12, r"a size >= dataset.image_size \(16\): the evaluation crop"),
                                ("image_size", 0, "a positive integer")):
        with pytest.raises(ConfigError, match=rf"^dataset.{key}={value}: {allowed}"):
            data.build(OmegaConf.merge(rgb, {key: value}))
    (tmp_path / "val" / "bee").rename(tmp_path / "val" / "cow")
    with pytest.raises(ConfigError, match=r"^dataset.test_dir='val': .*\(2 there, 2 here; in one only: bee, cow\)$"):
        data.build(rgb)


def test_cifar_resized_by_its_transforms(tmp_path):
    """A Resize in CIFAR's transforms gives the model another input shape: with ``input_shape`` set to match it
    trains; without, one line offers both fixes."""
    write_cifar100(tmp_path)
    resize = [{"Resize": {"size": 40, "antialias": True}}]
    s = data.build(_cfg("cifar100", root=str(tmp_path), input_shape=[3, 40, 40], train_transforms=resize,
                        eval_transforms=resize))
    assert s.input_shape == (3, 40, 40) and s.test[0][0].shape == (3, 40, 40) and s.train[(0, 0)][0].shape == (3, 40, 40)
    with pytest.raises(ConfigError, match=r"^dataset.train_transforms=.*\[3, 32, 32\] \(the train split's are "
                                          r"\[3, 40, 40\]: add Resize/CenterCrop, or set dataset.input_shape=\[3, 40, 40\]\)"):
        data.build(_cfg("cifar100", root=str(tmp_path), train_transforms=resize, eval_transforms=resize))
    with pytest.raises(ConfigError, match=r"^dataset.input_shape=\[3, 40, 40\]: the cifar100 data has shape"):
        data.build(_cfg("cifar100", root=str(tmp_path), input_shape=[3, 40, 40], train_transforms=[],
                        eval_transforms=[]))


def test_a_channels_first_array_dataset_is_read_without_pil(tmp_path, monkeypatch):
    """SVHN keeps its images as one uint8 array [N, C, H, W]: the torchvision builder takes it as it is (no PIL
    image per sample), with the values the class's own __getitem__ gives."""
    import scipy.io
    import torchvision

    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: True)  # our files, not theirs

    rng = np.random.default_rng(5)
    for split, n in (("train", 12), ("test", 6)):  # SVHN's .mat layout: X [H, W, C, N], y [N, 1] in 1..10
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat",
                         {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                          "y": rng.integers(1, 11, (n, 1)).astype(np.uint8)})
    s = data.build(_cfg("torchvision", root=str(tmp_path), cls="SVHN", input_shape=[3, 32, 32], num_classes=10,
                        val_fraction=0.25, in_memory=False))
    assert isinstance(s.test.base, data.ArrayImages) and s.test.base.images.shape == (6, 3, 32, 32)
    ref = torchvision.datasets.SVHN(str(tmp_path), split="test")
    for i in range(6):
        image, label = ref[i]
        want = (torch.as_tensor(np.array(image)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
        x, y = s.test[i]
        assert int(y) == label and torch.equal(x, want), i


def test_an_image_the_transforms_cannot_take_is_one_line_naming_it(tmp_path):
    """One image too small for the train crop, read by a DataLoader worker mid-epoch: one line naming the file and
    the transform's own error (the transforms themselves passed on the first image)."""
    write_image_folder(tmp_path, classes=("ant", "bee"), per_class={"train": 4, "val": 2})
    cfg = _cfg("imagefolder", root=str(tmp_path), image_size=16, resize=18, num_classes=2, val_fraction=0.25,
               train_transforms=[{"RandomCrop": {"size": 16}}])
    s = data.build(cfg)
    j = int(s.train.indices[-1])
    small = s.train.base.samples[j][0]
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(small)
    loader = torch.utils.data.DataLoader(s.train, batch_size=2, num_workers=1)
    with pytest.raises(ConfigError, match=rf"^dataset.root='{small}': images the transforms \['RandomCrop'\] can "
                                          r"take \(ValueError: .*\)$") as err:
        list(loader)
    assert len(str(err.value).splitlines()) == 1


def test_train_and_eval_transforms_of_different_shapes_are_one_line(tmp_path):
    """A train crop of another size than the evaluation's: the split that differs from dataset.input_shape is named,
    and no input_shape is offered that the other split would then refuse."""
    write_image_folder(tmp_path, classes=("ant", "bee"), per_class={"train": 4, "val": 2})
    cfg = _cfg("imagefolder", root=str(tmp_path), image_size=16, resize=18, num_classes=2,
               train_transforms=[{"RandomCrop": {"size": 10}}])
    for shape, key, split, got in ((None, "train", "train", 10), ([3, 10, 10], "eval", "val", 16)):
        with pytest.raises(ConfigError, match=rf"^dataset.{key}_transforms=.*: transforms that give images of "
                                              rf"dataset.input_shape .* \(the {split} split's are \[3, {got}, {got}\]: "
                                              r"add Resize/CenterCrop: the other splits' images have that shape\)$"):
            data.build(OmegaConf.merge(cfg, {"input_shape": shape} if shape else {}))
    with pytest.raises(ConfigError, match=r"make train_transforms and eval_transforms give one shape"):
        data.build(OmegaConf.merge(cfg, {"input_shape": [3, 12, 12]}))


def test_imagefolder_evaluation_resize_follows_image_size():
    """The evaluation resizes to 8/7 of ``image_size`` before center-cropping it (ImageNet's 256 -> 224); it was a
    fixed 73, so with image_size=16 validation and test saw the middle 5% of each image (22% of its side), while
    training's RandomResizedCrop saw 8-100% of it. An explicit resize still wins."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("prunelab.conf", version_base=None):
        sizes = {n: compose("config", overrides=["dataset=imagefolder", "dataset.num_classes=3",
                                                 *([f"dataset.image_size={n}"] if n else [])])
                 for n in (0, 16, 32, 224)}
        own = compose("config", overrides=["dataset=imagefolder", "dataset.num_classes=3", "dataset.image_size=16",
                                           "dataset.resize=20"])
    resolved = {n: OmegaConf.to_container(c.dataset, resolve=True) for n, c in sizes.items()}
    assert {n: r["resize"] for n, r in resolved.items()} == {0: 73, 16: 18, 32: 37, 224: 256}
    for r in resolved.values():
        resize, crop = r["eval_transforms"]
        assert resize["Resize"]["size"] == r["resize"] and crop["CenterCrop"]["size"] == r["image_size"]
    assert OmegaConf.to_container(own.dataset, resolve=True)["eval_transforms"][0]["Resize"]["size"] == 20


def test_a_torchvision_class_without_a_split_argument_needs_its_test_data_and_classes_are_counted(tmp_path):
    """``dataset=torchvision dataset.cls=ImageFolder`` took neither train= nor split=, so train and test opened the
    same folder and the test accuracy was the training data's (1.0 on a toy tree): refused unless test_kwargs say
    where the test data is (a root of their own wins over dataset.root). num_classes is checked against the data
    (it trained a 10-way head on 3 classes, or crashed mid-run on a label beyond it)."""
    tree = write_image_folder(tmp_path, classes=("cat", "ant", "bee"), per_class={"train": 4, "val": 2})
    cfg = _cfg("torchvision", root=str(tmp_path / "train"), cls="ImageFolder", input_shape=[3, 16, 16],
               num_classes=3, eval_transforms=[{"Resize": {"size": [16, 16]}}], val_fraction=0.25)
    with pytest.raises(ConfigError, match=r"^dataset.test_kwargs=None: the keyword arguments that open ImageFolder's "
                                          r"test data.*both splits would be the same images"):
        data.build(cfg)
    s = data.build(OmegaConf.merge(cfg, {"test_kwargs": {"root": str(tmp_path / "val")}, "in_memory": False}))
    assert (len(s.train) + len(s.val), len(s.test)) == (len(tree["train"]), len(tree["val"])) == (12, 6)
    assert sorted(s.test.base.samples) == sorted((str(p), c) for p, c, _ in tree["val"])
    for wrong in (2, 10):
        with pytest.raises(ConfigError, match=rf"^dataset.num_classes={wrong}: the ImageFolder data has 3 classes"):
            data.build(OmegaConf.merge(cfg, {"test_kwargs": {"root": str(tmp_path / "val")}, "num_classes": wrong}))
    shutil.rmtree(tmp_path / "val" / "bee")  # a test folder without one class: its labels would be shifted
    with pytest.raises(ConfigError, match=r"^dataset.test_kwargs=.*a test split with the training split's classes "
                                          r"in its order \(3 there, 2 here; in one only: bee\)$"):
        data.build(OmegaConf.merge(cfg, {"test_kwargs": {"root": str(tmp_path / "val")}}))
    write_mnist(tmp_path, "MNIST", gz=False)  # a class with labels and a classes list: 10
    mnist = _cfg("torchvision", root=str(tmp_path), cls="MNIST", input_shape=[1, 28, 28], num_classes=5)
    with pytest.raises(ConfigError, match=r"^dataset.num_classes=5: the MNIST data has 10 classes"):
        data.build(mnist)


def test_a_transforms_dtype_is_written_by_name():
    """YAML has no torch dtypes: ``{ToDtype: {dtype: float32, scale: true}}`` was refused as a string; a name that is
    no dtype stays one line."""
    import torchvision.transforms.v2 as v2

    from prunelab.data.samples import build_transforms

    (t,) = build_transforms([{"ToDtype": {"dtype": "float32", "scale": True}}], "train_transforms")
    assert isinstance(t, v2.ToDtype)
    out = t(torch.full((1, 2, 2), 255, dtype=torch.uint8))
    assert out.dtype == torch.float32 and torch.equal(out, torch.ones(1, 2, 2))  # scaled: 255 -> 1.0
    with pytest.raises(ConfigError, match=r"^dataset.train_transforms=.*a torch dtype name for dtype"):
        build_transforms([{"ToDtype": {"dtype": "float33"}}], "train_transforms")
    # a float image is taken as in [0, 1]: unscaled, the model would see 0-255 and train badly without a word
    with pytest.raises(ConfigError, match=r"^dataset.train_transforms=.*scale: true with a float dtype"):
        build_transforms([{"ToDtype": {"dtype": "float32"}}], "train_transforms")
