"""MNIST-format datasets through torchvision's reader: MNIST and Fashion-MNIST (idx files, plain or gzipped)."""
from __future__ import annotations

import gzip
import os
import shutil
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from .base import (DATASETS, DataSplits, FileDatasetOptions, carve_val, constant_option, data_root, fraction_option,
                   missing_files, normalise, option)

# Per-channel mean and std of the official *training* images, pixels in [0, 1]: MNIST's widely used
# 0.1307 / 0.3081, Fashion-MNIST's 0.2860 / 0.3530. A YAML may override them with ``mean`` / ``std`` lists.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)

_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_ready(raw: str, processed: str) -> bool:
    """Whether torchvision's MNIST reader will find its files; gzipped idx files are decompressed next to
    themselves first (what torchvision's own download does), since torchvision reads only the plain ones."""
    if all(os.path.isfile(os.path.join(processed, f)) for f in ("training.pt", "test.pt")):
        return True  # torchvision's legacy format
    for f in _IDX_FILES:
        path = os.path.join(raw, f)
        if os.path.isfile(path):
            continue
        if not os.path.isfile(path + ".gz"):
            return False
    for f in _IDX_FILES:
        path = os.path.join(raw, f)
        if not os.path.isfile(path):
            tmp = path + ".part"
            with gzip.open(path + ".gz", "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, path)
    return True


def _mnist_like(cfg: Any, cls_name: str, name: str, mean: tuple[float, ...], std: tuple[float, ...]) -> DataSplits:
    """MNIST-format data through ``torchvision.datasets.<cls_name>`` (idx files under ``root/<cls_name>/raw``)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = data_root(cfg)
    download = bool(option(cfg, "download", False))
    raw = os.path.join(root, cls_name, "raw")
    if not _idx_ready(raw, os.path.join(root, cls_name, "processed")):
        if not download:
            raise missing_files(root, cls_name, f"{cls_name}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]")
    mean, std = constant_option(cfg, "mean", mean), constant_option(cfg, "std", std)
    val_fraction = fraction_option(cfg, "val_fraction", 0.1)
    seed = int(option(cfg, "split_seed", 0))

    def load(train: bool) -> tuple[Tensor, Tensor]:
        ds = cls(root=root, train=train, download=download)
        x = torch.as_tensor(ds.data).to(torch.float32).div_(255.0).unsqueeze(1)  # uint8 [N, H, W] -> [N, 1, H, W]
        return normalise(x, mean, std), torch.as_tensor(ds.targets, dtype=torch.int64)

    x_train, y_train = load(True)
    x_test, y_test = load(False)
    train, val = carve_val(x_train, y_train, val_fraction, seed)
    return DataSplits(
        train=train,
        val=val,
        test=TensorDataset(x_test, y_test),
        input_shape=tuple(x_train.shape[1:]),
        num_classes=10,
        name=name,
        mean=mean,
        std=std,
    )


@DATASETS.register("mnist", paper="LeCun et al. 1998", options=FileDatasetOptions)
def build_mnist(cfg: Any) -> DataSplits:
    """MNIST (LeCun et al. 1998): 60k train / 10k test 28x28 grey digits, via ``torchvision.datasets.MNIST``."""
    return _mnist_like(cfg, "MNIST", "mnist", MNIST_MEAN, MNIST_STD)


@DATASETS.register("fashion_mnist", paper="Xiao, Rasul & Vollgraf 2017, Fashion-MNIST", options=FileDatasetOptions)
def build_fashion_mnist(cfg: Any) -> DataSplits:
    """Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey clothing images, via ``FashionMNIST``."""
    return _mnist_like(cfg, "FashionMNIST", "fashion_mnist", FASHION_MNIST_MEAN, FASHION_MNIST_STD)
