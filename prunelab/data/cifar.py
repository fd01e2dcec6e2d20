"""CIFAR-10 and CIFAR-100 from the official python-version batch files, read without running any code from them,
with the He et al. 2016 augmentation.

Both read the pickles into one uint8 array, so both data paths start from the same pixels: in memory, one
vectorised pass normalises every image; streamed, a ``DataLoader`` normalises each sample after the config's
per-sample ``train_transforms`` (torchvision v2, none by default). The standard crop-and-flip augmentation
(``augment``) is batch-level, applied by the trainer on either path, so that the two paths give the same batches.
"""
from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError
from .augment import RandomCropFlip
from .base import (DATASETS, DataSplits, FileDatasetOptions, Transform, constant_option, data_root, fraction_option,
                   int_option, missing_files, option, val_split)
from .samples import ArrayImages, Pipeline, SampleDataset, build_transforms

# CIFAR-10's per-channel mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616) of the training set (the
# often-copied (0.2023, 0.1994, 0.2010) is not the dataset std). A YAML may override them.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# CIFAR-100's per-channel mean and std of the 50k training images (pixels in [0, 1], population std).
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

CIFAR10_TRAIN, CIFAR10_TEST = tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",)
CIFAR10_FILES = CIFAR10_TRAIN + CIFAR10_TEST + ("batches.meta",)
CIFAR100_FILES = ("train", "test", "meta")

#: the only globals a CIFAR batch pickle needs: numpy's array reconstruction (the official files: protocol 2;
#: copies re-pickled by numpy 1 or 2 under newer protocols) and the str -> bytes step of protocol 2
_ALLOWED = {(core, name) for core in ("numpy.core.multiarray", "numpy._core.multiarray")
            for name in ("_reconstruct", "scalar")} | \
    {(core, "_frombuffer") for core in ("numpy.core.numeric", "numpy._core.numeric")} | \
    {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds only what CIFAR batch files hold: dicts, lists, strings, bytes, numbers and
    numpy arrays. Any other global (a function a tampered file would call) is refused before it can run.

    torchvision's reader unpickles with the standard unpickler and guards the files by their md5 only; that
    check would refuse any copy that is not the official release (a subset, a re-export, a test fixture), so
    prunelab reads every file this way instead and keeps torchvision for the download (md5-checked archive)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"a global {module}.{name}, which CIFAR data never holds")


def read_batch(path: str) -> dict[str, Any]:
    """One CIFAR batch file as a dict with str keys (``data`` uint8 [N, 3072], ``labels``), read by
    :class:`CifarUnpickler`; anything else is a one-line :class:`ConfigError` naming the file."""
    try:
        with open(path, "rb") as f:
            obj = CifarUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise ConfigError("dataset.root", os.path.dirname(os.path.dirname(path)),
                          f"CIFAR batch files; {os.path.basename(path)} is not one ({exc})") from None
    if not isinstance(obj, dict):
        raise ConfigError("dataset.root", os.path.dirname(os.path.dirname(path)),
                          f"CIFAR batch files; {os.path.basename(path)} holds a {type(obj).__name__}, not a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _images(batch: dict[str, Any], path: str) -> tuple[np.ndarray, list[int]]:
    data, labels = batch.get("data"), batch.get("labels", batch.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 \
            or not isinstance(labels, list) or len(labels) != len(data):
        raise ConfigError("dataset.root", os.path.dirname(os.path.dirname(path)),
                          f"CIFAR batch files; {os.path.basename(path)} lacks uint8 data [N, 3072] and N labels")
    return data, labels


def load_split(folder: str, files: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    """The images (uint8 [N, 3, 32, 32]) and labels of the batch files ``files`` in ``folder``."""
    xs, ys = [], []
    for name in files:
        data, labels = _images(read_batch(os.path.join(folder, name)), os.path.join(folder, name))
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.extend(int(v) for v in labels)
    return torch.from_numpy(np.concatenate(xs)), torch.as_tensor(ys, dtype=torch.int64)


def download(cls_name: str, root: str) -> None:
    """The official archive through torchvision (its md5 is checked before it is unpacked)."""
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_and_extract_archive

    base = getattr(tvd, cls_name)
    download_and_extract_archive(base.url, root, filename=base.filename, md5=base.tgz_md5)


@dataclass
class CifarOptions(FileDatasetOptions):
    """``dataset=cifar10|cifar100``: the files' keys, the He et al. 2016 augmentation (``augment``,
    ``crop_padding``) and the streaming path's per-sample transforms."""

    augment: bool = True
    crop_padding: int = 4
    train_transforms: list[Any] = field(default_factory=list)
    eval_transforms: list[Any] = field(default_factory=list)


def _cifar(cfg: Any, cls_name: str, name: str, folder_name: str, files: tuple[tuple[str, ...], tuple[str, ...]],
           num_classes: int, mean: tuple[float, ...], std: tuple[float, ...]) -> DataSplits:
    """A CIFAR dataset from ``root/<folder_name>``: the official train set split into train and val (seeded),
    the official test set as test."""
    root = data_root(cfg)
    folder = os.path.join(root, folder_name)
    train_files, test_files = files
    needed = CIFAR10_FILES if name == "cifar10" else CIFAR100_FILES
    if not all(os.path.isfile(os.path.join(folder, f)) for f in needed):
        if not bool(option(cfg, "download", False)):
            raise missing_files(root, name, f"{folder_name}/{{{','.join(needed)}}}")
        download(cls_name, root)
    mean, std = constant_option(cfg, "mean", mean), constant_option(cfg, "std", std)
    val_fraction = fraction_option(cfg, "val_fraction", 0.1)
    plain = Pipeline(build_transforms(option(cfg, "eval_transforms"), "eval_transforms"), mean, std)
    augment = build_transforms(option(cfg, "train_transforms"), "train_transforms")
    train_pipe = Pipeline(augment, mean, std, augment=True) if augment else plain
    train_images, test_images = (ArrayImages(*load_split(folder, f)) for f in (train_files, test_files))
    train_idx, val_idx = val_split(len(train_images), val_fraction, int(option(cfg, "split_seed", 0)))
    transform: Optional[Transform] = None
    if bool(option(cfg, "augment", True)):
        padding = int_option(cfg, "crop_padding", 4, 0)
        transform = RandomCropFlip(padding=padding or 0, fill=[-m / s for m, s in zip(mean, std)], flip=True)
    return DataSplits(
        train=SampleDataset(train_images, train_pipe, train_idx, plain),
        val=SampleDataset(train_images, plain, val_idx),
        test=SampleDataset(test_images, plain),
        input_shape=tuple(train_images.images.shape[1:]),
        num_classes=num_classes,
        name=name,
        train_transform=transform,
        mean=mean,
        std=std,
    )


@DATASETS.register("cifar10", paper="Krizhevsky 2009, Learning multiple layers of features from tiny images",
                   options=CifarOptions)
def build_cifar10(cfg: Any) -> DataSplits:
    """CIFAR-10 (Krizhevsky 2009): 50k train / 10k test 32x32 colour images, 10 classes, read from the
    ``cifar-10-batches-py`` pickles without running code from them (:class:`CifarUnpickler`). ``augment`` (default true) sets the train transform
    of He et al. 2016: 4-pixel zero padding, random 32x32 crop, random horizontal flip."""
    return _cifar(cfg, "CIFAR10", "cifar10", "cifar-10-batches-py", (CIFAR10_TRAIN, CIFAR10_TEST), 10, CIFAR10_MEAN,
                  CIFAR10_STD)


@DATASETS.register("cifar100", paper="Krizhevsky 2009, Learning multiple layers of features from tiny images",
                   options=CifarOptions)
def build_cifar100(cfg: Any) -> DataSplits:
    """CIFAR-100 (Krizhevsky 2009): 50k train / 10k test 32x32 colour images, 100 fine classes (the labels used
    for classification; the 20 coarse superclasses are not), read from the ``cifar-100-python`` pickles
    read the same way. Same augmentation and keys as cifar10."""
    return _cifar(cfg, "CIFAR100", "cifar100", "cifar-100-python", (("train",), ("test",)), 100, CIFAR100_MEAN,
                  CIFAR100_STD)
