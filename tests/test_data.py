"""Datasets: the embedded digits split, torchvision datasets read from small files in their real on-disk format,
missing files, and the CIFAR batch augmentation."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from prunelab import data
from prunelab.errors import ConfigError

from fakedata import write_cifar, write_mnist

CONF = Path(__file__).parents[1] / "conf" / "dataset"


def _cfg(name: str, **overrides):
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    return OmegaConf.merge(cfg, overrides)


def _pixels(x: torch.Tensor, splits: data.DataSplits) -> torch.Tensor:
    """Invert the normalisation back to uint8 pixel values."""
    m = torch.tensor(splits.mean).view(1, -1, 1, 1)
    s = torch.tensor(splits.std).view(1, -1, 1, 1)
    return (x * s + m).mul(255).round().to(torch.uint8)


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Any attempt to download fails the test."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.mnist as mnist
    import torchvision.datasets.utils as utils

    def boom(*args, **kwargs):
        raise AssertionError("a test tried to download")

    for mod in (cifar, mnist, utils):
        for fn in ("download_and_extract_archive", "download_url"):
            if hasattr(mod, fn):
                monkeypatch.setattr(mod, fn, boom)


@pytest.fixture(autouse=True)
def cache(monkeypatch, tmp_path_factory) -> Path:
    """Decompressed files go to a fresh cache folder, not the user's ~/.cache."""
    folder = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("PRUNELAB_CACHE", str(folder))
    return folder


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


# -------------------------------------------------------------------------------------------------- digits
def test_digits_split_sizes_shapes_and_train_normalisation():
    s = data.build(_cfg("digits"))
    n = 1797
    assert len(s.train) + len(s.val) + len(s.test) == n
    assert len(s.test) == round(0.2 * n) and len(s.val) == round(0.1 * n)
    assert s.input_shape == (1, 8, 8) and s.num_classes == 10 and s.name == "digits"
    x, y = s.train.tensors
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and tuple(x.shape[1:]) == (1, 8, 8)
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std()) - 1.0) < 1e-3  # train statistics
    assert float(s.test.tensors[0].mean()) != pytest.approx(0.0, abs=1e-6)  # not re-normalised per split
    assert set(y.tolist()) == set(range(10)) and set(s.test.tensors[1].tolist()) == set(range(10))
    # inverting the normalisation gives the original pixels/16 in [0, 1]
    raw = x * s.std[0] + s.mean[0]
    assert float(raw.min()) >= -1e-5 and float(raw.max()) <= 1 + 1e-5
    assert s.train_transform is None


def test_digits_split_is_seeded():
    a = data.build(_cfg("digits", split_seed=0))
    b = data.build({"name": "digits", "split_seed": 0})  # plain dict config, defaults
    c = data.build(_cfg("digits", split_seed=1))
    for split in ("train", "val", "test"):
        for ta, tb in zip(getattr(a, split).tensors, getattr(b, split).tensors):
            assert torch.equal(ta, tb)
    assert not torch.equal(a.test.tensors[0], c.test.tensors[0])


def test_digits_bad_fractions_and_limit():
    with pytest.raises(ConfigError, match="dataset.val_fraction"):
        data.build(_cfg("digits", val_fraction=0.5, test_fraction=0.5))
    with pytest.raises(ConfigError, match="dataset.test_fraction"):
        data.build(_cfg("digits", test_fraction=1.5))
    s = data.build(_cfg("digits", limit=100, eval_limit=50, val_fraction=0.0))
    assert len(s.train) == 100 and len(s.val) == 0 and len(s.test) == 50


def test_unknown_dataset_and_wrong_shape():
    with pytest.raises(ConfigError, match=r"dataset.name='nope': registered: .*digits"):
        data.build({"name": "nope"})
    with pytest.raises(ConfigError, match="dataset.input_shape"):
        data.build({"name": "digits", "input_shape": [1, 28, 28]})
    with pytest.raises(ConfigError, match="dataset.num_classes"):
        data.build({"name": "digits", "num_classes": 100})


# ------------------------------------------------------------------------------------------ MNIST format
def _assert_same_set(x_loaded: torch.Tensor, y_loaded: torch.Tensor, images: np.ndarray, labels: np.ndarray):
    """The loaded (shuffled) samples are exactly the written ones, pixel for pixel and label for label."""
    want = {img.tobytes(): int(lab) for img, lab in zip(images, labels)}
    got = {img.numpy().tobytes(): int(lab) for img, lab in zip(x_loaded, y_loaded)}
    assert got == want


@pytest.mark.parametrize("name,folder,gz", [("mnist", "MNIST", False), ("fashion_mnist", "FashionMNIST", True)])
def test_mnist_like_loads_idx_files(tmp_path, name, folder, gz):
    arrays = write_mnist(tmp_path, folder, gz)
    s = data.build(_cfg(name, root=str(tmp_path), val_fraction=0.2, split_seed=3))
    assert s.input_shape == (1, 28, 28) and s.num_classes == 10 and s.name == name
    assert (len(s.train), len(s.val), len(s.test)) == (40, 10, 20)
    assert s.mean == (data.MNIST_MEAN if name == "mnist" else data.FASHION_MNIST_MEAN)
    x_tr = torch.cat([_pixels(s.train.tensors[0], s), _pixels(s.val.tensors[0], s)])[:, 0]
    y_tr = torch.cat([s.train.tensors[1], s.val.tensors[1]])
    _assert_same_set(x_tr, y_tr, arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"])
    # the test split keeps the file's order
    assert torch.equal(_pixels(s.test.tensors[0], s)[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))
    assert torch.equal(s.test.tensors[1], torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())
    # the split is seeded, and limit caps the train set
    again = data.build(_cfg(name, root=str(tmp_path), val_fraction=0.2, split_seed=3, limit=7))
    assert len(again.train) == 7
    assert torch.equal(again.val.tensors[0], s.val.tensors[0])


def test_gzipped_files_are_read_without_writing_beside_them(tmp_path, cache):
    """A source folder is only read (a system folder may be read-only): .gz files are decompressed into the
    cache, once; a second load reuses the cache; a changed source file is decompressed again."""
    arrays = write_mnist(tmp_path, "FashionMNIST", gz=True)
    before = _listing(tmp_path)
    first = data.build(_cfg("fashion_mnist", root=str(tmp_path)))
    assert _listing(tmp_path) == before  # nothing written next to the .gz files
    cached = sorted(p.name for p in cache.rglob("*-ubyte"))
    assert cached == sorted(data.mnist.IDX_FILES)
    stamp = _listing(cache)
    second = data.build(_cfg("fashion_mnist", root=str(tmp_path)))
    assert _listing(cache) == stamp and torch.equal(first.test.tensors[0], second.test.tensors[0])
    assert torch.equal(_pixels(first.test.tensors[0], first)[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))

    (tmp_path / "FashionMNIST").rename(tmp_path / "old")
    changed = write_mnist(tmp_path, "FashionMNIST", gz=True, n_test=7)
    third = data.build(_cfg("fashion_mnist", root=str(tmp_path)))
    assert torch.equal(_pixels(third.test.tensors[0], third)[:, 0], torch.from_numpy(changed["t10k-images-idx3-ubyte"]))


def test_fashion_mnist_defaults_to_the_system_folder(tmp_path, monkeypatch):
    """root null: Debian's folder (the four .gz files directly in it) when it holds the files, else
    $PRUNELAB_DATA; an explicit root always wins."""
    system = tmp_path / "usr-share" / "fashion-mnist"
    system.mkdir(parents=True)
    from_system = write_mnist(system.parent, "x", gz=True, n_test=11)
    for f in (system.parent / "x" / "raw").iterdir():
        f.rename(system / f.name)
    monkeypatch.setattr(data.mnist, "DEBIAN_FASHION_MNIST", str(system))
    own = tmp_path / "own"
    from_own = write_mnist(own, "FashionMNIST", gz=False, n_test=13)
    monkeypatch.setenv("PRUNELAB_DATA", str(own))

    before = _listing(system)
    s = data.build(_cfg("fashion_mnist"))
    assert s.test.tensors[1].tolist() == from_system["t10k-labels-idx1-ubyte"].tolist()
    assert _listing(system) == before
    s = data.build(_cfg("fashion_mnist", root=str(own)))
    assert s.test.tensors[1].tolist() == from_own["t10k-labels-idx1-ubyte"].tolist()

    monkeypatch.setattr(data.mnist, "DEBIAN_FASHION_MNIST", str(tmp_path / "not-installed"))
    s = data.build(_cfg("fashion_mnist"))  # no system copy: $PRUNELAB_DATA, as for the other datasets
    assert s.test.tensors[1].tolist() == from_own["t10k-labels-idx1-ubyte"].tolist()
    monkeypatch.delenv("PRUNELAB_DATA")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="not-installed has no copy either"):
        data.build(_cfg("fashion_mnist"))
    # a dataset.root without the files, where the system has them: the message points there, not "no copy"
    monkeypatch.setattr(data.mnist, "DEBIAN_FASHION_MNIST", str(system))
    with pytest.raises(ConfigError) as err:
        data.build(_cfg("fashion_mnist", root=str(tmp_path / "empty")))
    assert "no copy" not in str(err.value) and f"dataset.root=null reads the copy in {system}" in str(err.value)


# --------------------------------------------------------------------------------------- CIFAR-10 format
def test_cifar10_loads_pickled_batches(tmp_path):
    batches = write_cifar(tmp_path)
    s = data.build(_cfg("cifar10", root=str(tmp_path), val_fraction=0.25))
    assert s.input_shape == (3, 32, 32) and s.num_classes == 10 and s.mean == data.CIFAR10_MEAN
    assert (len(s.train), len(s.val), len(s.test)) == (30, 10, 10)
    train_imgs = np.concatenate([batches[f"data_batch_{k}"]["data"] for k in range(1, 6)]).reshape(-1, 3, 32, 32)
    train_labels = np.concatenate([batches[f"data_batch_{k}"]["labels"] for k in range(1, 6)])
    x_tr = torch.cat([_pixels(s.train.tensors[0], s), _pixels(s.val.tensors[0], s)])
    y_tr = torch.cat([s.train.tensors[1], s.val.tensors[1]])
    _assert_same_set(x_tr, y_tr, train_imgs, train_labels)
    test = batches["test_batch"]
    assert torch.equal(_pixels(s.test.tensors[0], s), torch.from_numpy(test["data"].reshape(-1, 3, 32, 32)))
    assert s.test.tensors[1].tolist() == test["labels"]
    assert isinstance(s.train_transform, data.RandomCropFlip)
    assert data.build(_cfg("cifar10", root=str(tmp_path), augment=False)).train_transform is None


def test_download_true_with_files_present_does_not_download(tmp_path):
    write_cifar(tmp_path)
    write_mnist(tmp_path, "MNIST", gz=False)
    assert len(data.build(_cfg("cifar10", root=str(tmp_path), download=True)).test) == 10
    assert len(data.build(_cfg("mnist", root=str(tmp_path), download=True)).test) == 20


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_missing_files_raise_config_error_without_download(tmp_path, name):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(ConfigError) as info:
        data.build(_cfg(name, root=str(root)))
    msg = str(info.value)
    assert "\n" not in msg and str(root) in msg and "dataset.download=true" in msg
    assert msg.startswith("dataset.root=")
    assert os.listdir(root) == []  # nothing fetched, nothing created


# ------------------------------------------------------------------------------------------ augmentation
def test_random_crop_flip_is_seeded_vectorised_and_per_sample():
    t = data.RandomCropFlip(padding=4, fill=(-1.0, -2.0, -3.0))
    x = torch.randn(1, 3, 32, 32).expand(64, 3, 32, 32).contiguous()  # one image, 64 times
    a = t(x, torch.Generator().manual_seed(0))
    b = t(x, torch.Generator().manual_seed(0))
    c = t(x, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    distinct = {tuple(img.flatten().tolist()) for img in a}
    assert len(distinct) > 10  # different crops/flips per sample
    # each output is a 32x32 window of the padded image (fill per channel), possibly flipped
    padded = torch.tensor([-1.0, -2.0, -3.0]).view(3, 1, 1).expand(3, 40, 40).clone()
    padded[:, 4:36, 4:36] = x[0]
    windows = {tuple(padded[:, i : i + 32, j : j + 32].flatten().tolist()) for i in range(9) for j in range(9)}
    windows |= {tuple(padded[:, i : i + 32, j : j + 32].flip(2).flatten().tolist()) for i in range(9) for j in range(9)}
    assert distinct <= windows


def test_cifar_transform_fill_is_black(tmp_path):
    write_cifar(tmp_path)
    s = data.build(_cfg("cifar10", root=str(tmp_path)))
    x = s.train.tensors[0][:32]
    out = s.train_transform(x, torch.Generator().manual_seed(0))
    # padded pixels invert to pixel value 0 (black), like padding before normalisation
    assert float((_pixels(out, s) == 0).float().mean()) > 0.02  # random pixels are 0 with p=1/256
    assert torch.equal(out, s.train_transform(x, torch.Generator().manual_seed(0)))
