"""Image-folder datasets (Tiny-ImageNet, ImageNet subsets, your own) through ``torchvision.datasets.ImageFolder``."""
from __future__ import annotations

import functools
import os
from typing import Any

from .. import resolvers as _resolvers  # noqa: F401 - registers ${prunelab.eval_resize:}, which imagefolder.yaml uses
from ..errors import ConfigError
from .base import DATASETS, DataSplits, constant_option, data_root, fraction_option, option, val_split
from .samples import Pipeline, SampleDataset, build_transforms

# ImageNet's per-channel mean and std (the torchvision models' constants); a YAML may set a dataset's own.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_image(path: str, mode: str = "RGB") -> Any:
    """torchvision's image loader (PIL, RGB; converted to ``mode``, "L" for grayscale), with a file it cannot read
    as one line naming the file (also from a DataLoader worker: :class:`~prunelab.errors.ConfigError` survives the
    worker's re-raise)."""
    from torchvision.datasets.folder import default_loader

    try:
        image = default_loader(path)
    except (OSError, ValueError, SyntaxError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise ConfigError("dataset.root", path, f"image files PIL can read ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    return image if mode == "RGB" else image.convert(mode)


def _folder(root: str, sub: str, key: str, mode: str) -> Any:
    from torchvision.datasets import ImageFolder

    path = os.path.join(root, sub)
    if not os.path.isdir(path):
        raise ConfigError("dataset.root", root, f"a folder with {sub}/<class>/<image> inside (dataset.{key}={sub})")
    try:
        return ImageFolder(path, loader=functools.partial(load_image, mode=mode))
    except (FileNotFoundError, RuntimeError) as exc:  # no class folders, or no images in them
        raise ConfigError("dataset.root", root, f"{sub}/<class>/<image> with images inside ({exc})") from None


def check_sizes(cfg: Any) -> None:
    """``image_size`` and ``resize`` (the default transforms' sizes): positive, and the evaluation's resize at least
    the crop (a smaller one makes CenterCrop pad the images with black)."""
    image_size, resize = option(cfg, "image_size"), option(cfg, "resize")
    for key, value in (("image_size", image_size), ("resize", resize)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"dataset.{key}", value, "a positive integer (pixels)")
    if image_size is not None and resize is not None and resize < image_size:
        raise ConfigError("dataset.resize", resize, f"a size >= dataset.image_size ({image_size}): the evaluation "
                          "crop of image_size would pad the resized images with black")


@DATASETS.register("imagefolder", paper="torchvision.datasets.ImageFolder")
def build_imagefolder(cfg: Any) -> DataSplits:
    """An ``ImageFolder`` tree: ``root/<train_dir>/<class>/<image>`` for training (``val_fraction`` of it, seeded,
    for validation) and ``root/<test_dir>/<class>/<image>`` as the test split; classes are the sub-folder names,
    sorted, and the test folder must have the same ones. Images are decoded to RGB (to grayscale with
    ``channels: 1``, the first entry of ``input_shape``) and go through ``train_transforms`` (default:
    RandomResizedCrop to ``image_size``, horizontal flip) or ``eval_transforms`` (default: Resize to 8/7 of
    ``image_size``, CenterCrop), then ``/ 255`` and normalisation with ``mean`` / ``std`` (default ImageNet's;
    grayscale: their means). Random train transforms make it stream (``in_memory=auto``)."""
    root = data_root(cfg)
    check_sizes(cfg)
    size = option(cfg, "input_shape")
    channels = int(size[0]) if size is not None else 3
    if channels not in (1, 3):
        raise ConfigError("dataset.input_shape", list(size), "[1 or 3, H, W]: images are decoded to grayscale (1) "
                          "or RGB (3)")
    train_dir, test_dir = str(option(cfg, "train_dir", "train")), str(option(cfg, "test_dir", "val"))
    train_base = _folder(root, train_dir, "train_dir", "L" if channels == 1 else "RGB")
    test_base = _folder(root, test_dir, "test_dir", "L" if channels == 1 else "RGB")
    if test_base.classes != train_base.classes:
        only = sorted(set(train_base.classes) ^ set(test_base.classes))
        raise ConfigError("dataset.test_dir", test_dir, f"a folder with the classes of {train_dir}/ "
                          f"({len(train_base.classes)} there, {len(test_base.classes)} here; in one only: "
                          f"{', '.join(only[:5])}{' ...' if len(only) > 5 else ''})")
    # grayscale: the mean of ImageNet's channel constants, as one channel
    mean = constant_option(cfg, "mean", IMAGENET_MEAN if channels == 3 else (sum(IMAGENET_MEAN) / 3,))
    std = constant_option(cfg, "std", IMAGENET_STD if channels == 3 else (sum(IMAGENET_STD) / 3,))
    plain = Pipeline(build_transforms(option(cfg, "eval_transforms"), "eval_transforms"), mean, std)
    augment = build_transforms(option(cfg, "train_transforms"), "train_transforms")
    train_idx, val_idx = val_split(len(train_base), fraction_option(cfg, "val_fraction", 0.1),
                                   int(option(cfg, "split_seed", 0)))
    shape = tuple(int(s) for s in size) if size is not None else (len(mean), 0, 0)
    return DataSplits(
        train=SampleDataset(train_base, Pipeline(augment, mean, std, augment=True) if augment else plain, train_idx, plain),
        val=SampleDataset(train_base, plain, val_idx),
        test=SampleDataset(test_base, plain),
        input_shape=shape,
        num_classes=len(train_base.classes),
        name="imagefolder",
        mean=mean,
        std=std,
    )
