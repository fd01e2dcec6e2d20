"""Registered dataset builders: every dataset is one ``(cfg) -> DataSplits`` function plus one YAML file in
``prunelab/conf/dataset/``.

All splits are in-memory ``TensorDataset(x, y)`` with ``x`` float32 ``[N, C, H, W]`` already normalised and
``y`` int64 ``[N]``, so a trainer can slice batches directly (and move the whole tensors to the device once).
Augmentation, where a dataset has one, is a batch-level function ``train_transform(x, generator) -> x`` that
the trainer applies to each training batch.

Datasets:
- ``digits``: scikit-learn's embedded 8x8 digits (1,797 images; no download), seeded stratified split.
- ``mnist``, ``fashion_mnist``, ``cifar10``: read through ``torchvision.datasets`` from ``root``; nothing is
  downloaded unless ``download=true``. A validation split is carved from the official train set with a seed.

Generic keys handled by :func:`build` for every dataset: ``limit`` (cap on train samples, a seeded random
subset), ``eval_limit`` (same for val and test), and the consistency check of ``input_shape`` /
``num_classes`` against the data actually loaded.
"""
from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from .errors import ConfigError
from .registry import Registry

__all__ = [
    "DATASETS",
    "DataSplits",
    "RandomCropFlip",
    "build",
    "MNIST_MEAN",
    "MNIST_STD",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
]

DATASETS: Registry[Callable[[Any], "DataSplits"]] = Registry("dataset.name")

# Standard normalisation constants: per-channel mean and std of the official *training* images, pixels in
# [0, 1]. MNIST: the widely used 0.1307 / 0.3081. Fashion-MNIST: 0.2860 / 0.3530. CIFAR-10: mean
# (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616) -- the true per-channel std of the training set
# (the often-copied (0.2023, 0.1994, 0.2010) is not the dataset std). A YAML may override them with
# ``mean`` / ``std`` lists.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

Transform = Callable[[Tensor, torch.Generator], Tensor]


@dataclass
class DataSplits:
    """The three splits of one dataset, plus what a model and a trainer need to know about them.

    ``train_transform``, when set, is a batch-level augmentation ``(x [B,C,H,W] float, generator) -> x``
    that the trainer applies to training batches only. ``mean`` / ``std`` are the per-channel constants the
    images were normalised with (``x = (pixel - mean) / std``, pixels in [0, 1]).
    """

    train: TensorDataset
    val: TensorDataset
    test: TensorDataset
    input_shape: tuple[int, ...]
    num_classes: int
    name: str
    train_transform: Optional[Transform] = None
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())


# ----------------------------------------------------------------------------------------------- helpers
def _get(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg.key`` for a DictConfig or a dict; ``default`` when absent or null."""
    value = cfg.get(key, None) if cfg is not None else None
    return default if value is None else value


def _fraction(cfg: Any, key: str, default: float) -> float:
    value = _get(cfg, key, default)
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"dataset.{key}", value, "a number in [0, 1)") from None
    if not 0.0 <= f < 1.0:
        raise ConfigError(f"dataset.{key}", value, "a number in [0, 1)")
    return f


def _int(cfg: Any, key: str, default: Optional[int], minimum: int) -> Optional[int]:
    value = _get(cfg, key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"dataset.{key}", value, f"an integer >= {minimum}" + (" or null" if default is None else ""))
    return int(value)


def _root(cfg: Any) -> str:
    """``dataset.root`` as an absolute path (relative paths are relative to the directory the app was started
    in, also under Hydra); defaults to ``$PRUNELAB_DATA`` or ``data``."""
    root = str(_get(cfg, "root", os.environ.get("PRUNELAB_DATA", "data")))
    root = os.path.expanduser(root)
    if not os.path.isabs(root):
        try:
            from hydra.utils import to_absolute_path

            root = to_absolute_path(root)
        except Exception:  # hydra missing or not usable: relative to the current directory
            root = os.path.abspath(root)
    return root


def _constants(cfg: Any, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
    value = _get(cfg, key, None)
    if value is None:
        return default
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"dataset.{key}", value, f"a list of {len(default)} numbers, or null") from None
    if len(out) != len(default) or (key == "std" and any(v <= 0 for v in out)):
        raise ConfigError(f"dataset.{key}", value, f"a list of {len(default)} numbers (std > 0), or null")
    return out


def _normalise(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel, in place on a float ``[N, C, H, W]`` tensor."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def _subset(ds: TensorDataset, n: Optional[int], seed: int) -> TensorDataset:
    """A seeded random subset of ``n`` samples (the whole set when ``n`` is None or >= its size)."""
    size = len(ds)
    if n is None or n >= size:
        return ds
    idx = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return TensorDataset(*(t[idx] for t in ds.tensors))


def _carve_val(
    x: Tensor, y: Tensor, val_fraction: float, seed: int
) -> tuple[TensorDataset, TensorDataset]:
    """Shuffle the official train set with ``seed`` and split off ``round(val_fraction * N)`` for validation."""
    n = x.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * n))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    return TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[val_idx], y[val_idx])


# ------------------------------------------------------------------------------------------ augmentation
class RandomCropFlip:
    """Random crop after ``padding`` pixels of zero padding, then a random horizontal flip (p=0.5), per sample.

    The standard CIFAR augmentation of He et al. 2016 (4-pixel padding, 32x32 crop, flip). It works on a
    batch of already-normalised images ``[B, C, H, W]``, so the padding value per channel is ``fill`` =
    ``(0 - mean) / std``: a black pixel, as in the usual pad-then-normalise pipeline. Vectorised (two
    ``gather`` calls and one ``where``); the random draws (row offsets, column offsets, flips, in that order)
    come from ``generator`` only, so the result is deterministic given the generator's state. The generator
    may live on another device than ``x``.
    """

    def __init__(self, padding: int = 4, fill: Sequence[float] = (0.0,), flip: bool = True) -> None:
        if padding < 0:
            raise ConfigError("dataset.crop_padding", padding, "an integer >= 0")
        self.padding = int(padding)
        self.fill = tuple(float(f) for f in fill)
        self.flip = bool(flip)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"RandomCropFlip expects a batch [B, C, H, W], got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        p = self.padding
        gdev = generator.device
        out = x
        if p > 0:
            fill = torch.tensor(self.fill, dtype=x.dtype, device=x.device)
            fill = fill.expand(c) if fill.numel() == 1 else fill
            padded = fill.view(1, c, 1, 1).expand(b, c, h + 2 * p, w + 2 * p).clone()
            padded[:, :, p : p + h, p : p + w] = x
            oy = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=gdev).to(x.device)
            ox = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=gdev).to(x.device)
            rows = oy[:, None] + torch.arange(h, device=x.device)  # [B, H]
            cols = ox[:, None] + torch.arange(w, device=x.device)  # [B, W]
            out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * p))
            out = out.gather(3, cols[:, None, None, :].expand(b, c, h, w))
        if self.flip:
            flip = (torch.rand(b, generator=generator, device=gdev) < 0.5).to(x.device)
            out = torch.where(flip[:, None, None, None], out.flip(3), out)
        return out

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip={self.flip})"


# -------------------------------------------------------------------------------------------------- build
def build(cfg: Any) -> DataSplits:
    """Build the dataset named by ``cfg.name`` (a DictConfig or a dict).

    After the registered builder ran: ``limit`` caps the train split and ``eval_limit`` the val and test
    splits (seeded random subsets, seed ``split_seed``), and ``input_shape`` / ``num_classes``, when the
    config states them, must match the data (models read them from the config by interpolation).
    """
    name = _get(cfg, "name")
    splits = DATASETS.get(str(name))(cfg)
    seed = int(_get(cfg, "split_seed", 0))
    limit = _int(cfg, "limit", None, 1)
    eval_limit = _int(cfg, "eval_limit", None, 1)
    splits.train = _subset(splits.train, limit, seed)
    splits.val = _subset(splits.val, eval_limit, seed + 1)
    splits.test = _subset(splits.test, eval_limit, seed + 2)

    shape = _get(cfg, "input_shape")
    if shape is not None and tuple(int(s) for s in shape) != tuple(splits.input_shape):
        raise ConfigError("dataset.input_shape", list(shape), f"the {name} data has shape {list(splits.input_shape)}")
    num_classes = _get(cfg, "num_classes")
    if num_classes is not None and int(num_classes) != splits.num_classes:
        raise ConfigError("dataset.num_classes", num_classes, f"the {name} data has {splits.num_classes} classes")
    return splits


# ------------------------------------------------------------------------------------------------- digits
@DATASETS.register("digits")
def build_digits(cfg: Any) -> DataSplits:
    """scikit-learn's 8x8 handwritten digits (UCI optdigits test set; 1,797 images, 10 classes), embedded in
    scikit-learn, so no download. Pixels are scaled by 1/16 to [0, 1], then normalised with the mean and std
    of the *train* split (one channel). The split is stratified by class and seeded by ``split_seed``:
    ``round(test_fraction * N)`` test, ``round(val_fraction * N)`` val, the rest train.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    val_fraction = _fraction(cfg, "val_fraction", 0.1)
    test_fraction = _fraction(cfg, "test_fraction", 0.2)
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            "dataset.val_fraction", val_fraction, f"val_fraction + test_fraction < 1 (test_fraction={test_fraction})"
        )
    seed = int(_get(cfg, "split_seed", 0))

    bunch = load_digits()
    x = torch.from_numpy(bunch.images).to(torch.float32).div_(16.0).unsqueeze(1)  # [N, 1, 8, 8]
    y = torch.from_numpy(bunch.target).to(torch.int64)
    n = x.shape[0]
    n_test = int(round(test_fraction * n))
    n_val = int(round(val_fraction * n))

    idx = torch.arange(n).numpy()
    labels = y.numpy()

    def split(ids: Any, k: int, rs: int) -> tuple[Any, Any]:
        if k == 0:
            return ids, ids[:0]
        return train_test_split(ids, test_size=k, stratify=labels[ids], random_state=rs)

    rest, test_idx = split(idx, n_test, seed)
    train_idx, val_idx = split(rest, n_val, seed + 1)
    train_idx, val_idx, test_idx = (torch.as_tensor(i, dtype=torch.int64) for i in (train_idx, val_idx, test_idx))

    mean = (float(x[train_idx].mean()),)
    std = (float(x[train_idx].std()),)
    x = _normalise(x, mean, std)
    return DataSplits(
        train=TensorDataset(x[train_idx], y[train_idx]),
        val=TensorDataset(x[val_idx], y[val_idx]),
        test=TensorDataset(x[test_idx], y[test_idx]),
        input_shape=(1, 8, 8),
        num_classes=10,
        name="digits",
        mean=mean,
        std=std,
    )


# ------------------------------------------------------------------------------------------ torchvision
def _missing(root: str, name: str, detail: str) -> ConfigError:
    return ConfigError(
        "dataset.root",
        root,
        f"no {name} files there (expected {detail}); set dataset.download=true to fetch them, "
        "or point dataset.root at a copy",
    )


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
    root = _root(cfg)
    download = bool(_get(cfg, "download", False))
    raw = os.path.join(root, cls_name, "raw")
    if not _idx_ready(raw, os.path.join(root, cls_name, "processed")):
        if not download:
            raise _missing(root, cls_name, f"{cls_name}/raw/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz]")
    mean, std = _constants(cfg, "mean", mean), _constants(cfg, "std", std)
    val_fraction = _fraction(cfg, "val_fraction", 0.1)
    seed = int(_get(cfg, "split_seed", 0))

    def load(train: bool) -> tuple[Tensor, Tensor]:
        ds = cls(root=root, train=train, download=download)
        x = torch.as_tensor(ds.data).to(torch.float32).div_(255.0).unsqueeze(1)  # uint8 [N, H, W] -> [N, 1, H, W]
        return _normalise(x, mean, std), torch.as_tensor(ds.targets, dtype=torch.int64)

    x_train, y_train = load(True)
    x_test, y_test = load(False)
    train, val = _carve_val(x_train, y_train, val_fraction, seed)
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


@DATASETS.register("mnist")
def build_mnist(cfg: Any) -> DataSplits:
    """MNIST (LeCun et al. 1998): 60k train / 10k test 28x28 grey digits, via ``torchvision.datasets.MNIST``."""
    return _mnist_like(cfg, "MNIST", "mnist", MNIST_MEAN, MNIST_STD)


@DATASETS.register("fashion_mnist")
def build_fashion_mnist(cfg: Any) -> DataSplits:
    """Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey clothing images, via ``FashionMNIST``."""
    return _mnist_like(cfg, "FashionMNIST", "fashion_mnist", FASHION_MNIST_MEAN, FASHION_MNIST_STD)


def _cifar10_reader() -> type:
    """torchvision's CIFAR10 reader with the per-file md5 check replaced by a presence check.

    torchvision verifies each pickled batch against the md5 of the official release, so any other copy in the
    same format (a subset, a re-export, a test fixture) is refused as "not found or corrupted". This subclass
    keeps torchvision's reading code and its download (which still verifies the official archive's md5).
    """
    from torchvision.datasets import CIFAR10

    class _CIFAR10Files(CIFAR10):
        train_list = [[f, None] for f, _ in CIFAR10.train_list]
        test_list = [[f, None] for f, _ in CIFAR10.test_list]
        meta = {**CIFAR10.meta, "md5": None}

    return _CIFAR10Files


CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


@DATASETS.register("cifar10")
def build_cifar10(cfg: Any) -> DataSplits:
    """CIFAR-10 (Krizhevsky 2009): 50k train / 10k test 32x32 colour images, 10 classes, read from the
    ``cifar-10-batches-py`` pickles through torchvision. ``augment`` (default true) sets the train transform
    of He et al. 2016: 4-pixel zero padding, random 32x32 crop, random horizontal flip."""
    reader = _cifar10_reader()
    root = _root(cfg)
    download = bool(_get(cfg, "download", False))
    folder = os.path.join(root, reader.base_folder)
    if not all(os.path.isfile(os.path.join(folder, f)) for f in CIFAR10_FILES) and not download:
        raise _missing(root, "CIFAR-10", f"{reader.base_folder}/{{data_batch_1..5,test_batch,batches.meta}}")
    mean, std = _constants(cfg, "mean", CIFAR10_MEAN), _constants(cfg, "std", CIFAR10_STD)
    val_fraction = _fraction(cfg, "val_fraction", 0.1)
    seed = int(_get(cfg, "split_seed", 0))

    def load(train: bool) -> tuple[Tensor, Tensor]:
        ds = reader(root=root, train=train, download=download)
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)  # HWC uint8 -> CHW
        return _normalise(x, mean, std).contiguous(), torch.as_tensor(ds.targets, dtype=torch.int64)

    x_train, y_train = load(True)
    x_test, y_test = load(False)
    train, val = _carve_val(x_train, y_train, val_fraction, seed)
    transform: Optional[Transform] = None
    if bool(_get(cfg, "augment", True)):
        padding = _int(cfg, "crop_padding", 4, 0)
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
