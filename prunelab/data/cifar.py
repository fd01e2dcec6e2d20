"""CIFAR-10 from the official python-version batch files, read without running any code from them, with the
He et al. 2016 augmentation."""
from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ..errors import ConfigError
from .augment import RandomCropFlip
from .base import (DATASETS, DataSplits, FileDatasetOptions, Transform, carve_val, constant_option, data_root,
                   fraction_option, int_option, missing_files, normalise, option)

# CIFAR-10's per-channel mean (0.4914, 0.4822, 0.4465) and std (0.2470, 0.2435, 0.2616) of the training set (the
# often-copied (0.2023, 0.1994, 0.2010) is not the dataset std). A YAML may override them.
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = TRAIN_FILES + ("test_batch", "batches.meta")

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
                          f"CIFAR-10 batch files; {os.path.basename(path)} is not one ({exc})") from None
    if not isinstance(obj, dict):
        raise ConfigError("dataset.root", os.path.dirname(os.path.dirname(path)),
                          f"CIFAR-10 batch files; {os.path.basename(path)} holds a {type(obj).__name__}, not a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _images(batch: dict[str, Any], path: str) -> tuple[np.ndarray, list[int]]:
    data, labels = batch.get("data"), batch.get("labels", batch.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 \
            or not isinstance(labels, list) or len(labels) != len(data):
        raise ConfigError("dataset.root", os.path.dirname(os.path.dirname(path)),
                          f"CIFAR-10 batch files; {os.path.basename(path)} lacks uint8 data [N, 3072] and N labels")
    return data, labels


def load_split(folder: str, files: tuple[str, ...]) -> tuple[Tensor, Tensor]:
    """The images (uint8 [N, 3, 32, 32]) and labels of the batch files ``files`` in ``folder``."""
    xs, ys = [], []
    for name in files:
        data, labels = _images(read_batch(os.path.join(folder, name)), os.path.join(folder, name))
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.extend(int(v) for v in labels)
    return torch.from_numpy(np.concatenate(xs)), torch.as_tensor(ys, dtype=torch.int64)


def download(root: str) -> None:
    """The official archive through torchvision (its md5 is checked before it is unpacked)."""
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(CIFAR10.url, root, filename=CIFAR10.filename, md5=CIFAR10.tgz_md5)


@dataclass
class Cifar10Options(FileDatasetOptions):
    """``dataset=cifar10``: the files' keys, and the He et al. 2016 augmentation (``augment``, ``crop_padding``)."""

    augment: bool = True
    crop_padding: int = 4


@DATASETS.register("cifar10", paper="Krizhevsky 2009, Learning multiple layers of features from tiny images",
                   options=Cifar10Options)
def build_cifar10(cfg: Any) -> DataSplits:
    """CIFAR-10 (Krizhevsky 2009): 50k train / 10k test 32x32 colour images, 10 classes, read from the
    ``cifar-10-batches-py`` pickles without running code from them (:class:`CifarUnpickler`). ``augment``
    (default true) sets the train transform of He et al. 2016: 4-pixel zero padding, random 32x32 crop, random
    horizontal flip."""
    root = data_root(cfg)
    folder = os.path.join(root, FOLDER)
    present = all(os.path.isfile(os.path.join(folder, f)) for f in CIFAR10_FILES)
    if not present:
        if not bool(option(cfg, "download", False)):
            raise missing_files(root, "CIFAR-10", f"{FOLDER}/{{data_batch_1..5,test_batch,batches.meta}}")
        download(root)
    mean, std = constant_option(cfg, "mean", CIFAR10_MEAN), constant_option(cfg, "std", CIFAR10_STD)
    val_fraction = fraction_option(cfg, "val_fraction", 0.1)
    seed = int(option(cfg, "split_seed", 0))

    def load(files: tuple[str, ...]) -> tuple[Tensor, Tensor]:
        x, y = load_split(folder, files)
        return normalise(x.to(torch.float32).div_(255.0), mean, std).contiguous(), y

    x_train, y_train = load(TRAIN_FILES)
    x_test, y_test = load(("test_batch",))
    train, val = carve_val(x_train, y_train, val_fraction, seed)
    transform: Optional[Transform] = None
    if bool(option(cfg, "augment", True)):
        padding = int_option(cfg, "crop_padding", 4, 0)
        transform = RandomCropFlip(padding=padding or 0, fill=[-m / s for m, s in zip(mean, std)], flip=True)
    return DataSplits(
        train=train,
        val=val,
        test=TensorDataset(x_test, y_test),
        input_shape=tuple(x_train.shape[1:]),
        num_classes=10,
        name="cifar10",
        train_transform=transform,
        mean=mean,
        std=std,
    )
