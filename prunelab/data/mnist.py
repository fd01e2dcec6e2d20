"""MNIST-format datasets through torchvision's reader: MNIST and Fashion-MNIST (idx files, plain or gzipped).

Where the files come from (:func:`idx_source`): ``dataset.root`` when it is set (``root/<Folder>/raw``, or the
files directly in ``root``); with ``root`` null, a system folder the dataset names when it holds the files
(Fashion-MNIST: Debian's ``dataset-fashion-mnist`` package, ``/usr/share/datasets/fashion-mnist``), else
``$PRUNELAB_DATA`` or ``data`` as if given as ``root``. A source folder is only ever read: gzipped files are decompressed into a
cache folder (:func:`cache_dir`), never next to themselves, so a read-only system folder works and stays as
the package left it.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from .base import (DATASETS, DataSplits, FileDatasetOptions, carve_val, constant_option, data_root, fraction_option,
                   missing_files, normalise, option)

# Per-channel mean and std of the official *training* images, pixels in [0, 1]: MNIST's widely used
# 0.1307 / 0.3081, Fashion-MNIST's 0.2860 / 0.3530. A YAML may override them with ``mean`` / ``std`` lists.
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MNIST_MEAN, FASHION_MNIST_STD = (0.2860,), (0.3530,)

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# Debian's package `dataset-fashion-mnist` installs the four gzipped idx files here (`dpkg -L dataset-fashion-mnist`).
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def cache_dir() -> Path:
    """Where prunelab writes derived files: ``$PRUNELAB_CACHE``, else ``$XDG_CACHE_HOME/prunelab``, else
    ``~/.cache/prunelab``."""
    if os.environ.get("PRUNELAB_CACHE"):
        return Path(os.environ["PRUNELAB_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "prunelab"


def _has_idx_files(folder: Path) -> bool:
    return all((folder / f).is_file() or (folder / f"{f}.gz").is_file() for f in IDX_FILES)


@dataclass
class IdxSource:
    """The folder holding the four idx files (plain or ``.gz``), and the ``root`` the user meant (for messages)."""

    folder: Path
    root: str


def idx_source(cfg: Any, cls_name: str, system_dir: Optional[str]) -> IdxSource | None:
    """The folder with the idx files, or None: with ``dataset.root`` null, ``system_dir`` when it holds the files;
    otherwise ``root/<cls_name>/raw`` or ``root`` itself, ``root`` being ``dataset.root`` (null: ``$PRUNELAB_DATA``,
    else ``data``)."""
    if option(cfg, "root") is None and system_dir and _has_idx_files(Path(system_dir)):
        return IdxSource(Path(system_dir), system_dir)
    root = data_root(cfg)
    for folder in (Path(root) / cls_name / "raw", Path(root)):
        if _has_idx_files(folder):
            return IdxSource(folder, root)
    return None


def _system_copy(cfg: Any, system_dir: Optional[str]) -> str:
    """What the missing-files message says of the system's copy: none there, or one that ``dataset.root`` set
    to a folder passes over."""
    if not system_dir:
        return ""
    if not _has_idx_files(Path(system_dir)):
        return f"; {system_dir} has no copy either"
    return f"; dataset.root=null reads the copy in {system_dir}" if option(cfg, "root") is not None else ""


def _cache_key(folder: Path) -> str:
    """A short key of the source files (resolved path, size and mtime of each), so two sources never share a cache
    entry and a changed file is decompressed again."""
    parts = [str(folder.resolve())]
    for f in IDX_FILES:
        p = folder / f if (folder / f).is_file() else folder / f"{f}.gz"
        st = p.stat()
        parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def readable_root(source: IdxSource, cls_name: str) -> str:
    """A ``root`` torchvision's ``<cls_name>`` reader can read: ``root/<cls_name>/raw`` with the plain idx files.

    The source folder itself when it is that layout with plain files; otherwise the plain files are linked
    (plain sources) or decompressed (``.gz``) into ``cache_dir()/idx/<cls_name>-<key>/<cls_name>/raw``. Each file
    is written to a temporary name and renamed into place, so concurrent runs never read a partial file.
    """
    folder = source.folder
    if folder.name == "raw" and folder.parent.name == cls_name and all((folder / f).is_file() for f in IDX_FILES):
        return str(folder.parent.parent)
    root = cache_dir() / "idx" / f"{cls_name}-{_cache_key(folder)}"
    raw = root / cls_name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for f in IDX_FILES:
        if not (raw / f).is_file():
            _materialise(folder, f, raw / f)
    return str(root)


def _materialise(folder: Path, name: str, dst: Path) -> None:
    """``dst`` as a symlink to the plain file ``folder/name``, or the decompressed ``folder/name.gz``; written
    under a temporary name and renamed into place (atomic, so a concurrent reader never sees half a file)."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{name}.", suffix=".part")
    try:
        if (folder / name).is_file():
            os.close(fd)
            os.unlink(tmp)
            os.symlink((folder / name).resolve(), tmp)
        else:
            with os.fdopen(fd, "wb") as out, gzip.open(folder / f"{name}.gz", "rb") as src:
                shutil.copyfileobj(src, out, length=1 << 20)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        os.replace(tmp, dst)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def _mnist_like(cfg: Any, cls_name: str, name: str, mean: tuple[float, ...], std: tuple[float, ...],
                system_dir: Optional[str] = None) -> DataSplits:
    """MNIST-format data through ``torchvision.datasets.<cls_name>`` (see the module docstring for the files)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    download = bool(option(cfg, "download", False))
    source = idx_source(cfg, cls_name, system_dir)
    if source is not None:
        root = readable_root(source, cls_name)
    elif _legacy_processed(data_root(cfg), cls_name):
        root = data_root(cfg)
    elif download:
        root = data_root(cfg)
    else:
        where = f"{cls_name}/raw/ or the folder itself" + _system_copy(cfg, system_dir)
        raise missing_files(data_root(cfg), cls_name,
                            f"{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte[.gz] in {where}")
    mean, std = constant_option(cfg, "mean", mean), constant_option(cfg, "std", std)
    val_fraction = fraction_option(cfg, "val_fraction", 0.1)
    seed = int(option(cfg, "split_seed", 0))

    def load(train: bool) -> tuple[Tensor, Tensor]:
        ds = cls(root=root, train=train, download=download and source is None)
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


def _legacy_processed(root: str, cls_name: str) -> bool:
    """torchvision's legacy format (``processed/training.pt`` and ``test.pt``), which its reader still accepts."""
    processed = Path(root) / cls_name / "processed"
    return all((processed / f).is_file() for f in ("training.pt", "test.pt"))


@DATASETS.register("mnist", paper="LeCun et al. 1998", options=FileDatasetOptions)
def build_mnist(cfg: Any) -> DataSplits:
    """MNIST (LeCun et al. 1998): 60k train / 10k test 28x28 grey digits, via ``torchvision.datasets.MNIST``."""
    return _mnist_like(cfg, "MNIST", "mnist", MNIST_MEAN, MNIST_STD)


@DATASETS.register("fashion_mnist", paper="Xiao, Rasul & Vollgraf 2017, Fashion-MNIST", options=FileDatasetOptions)
def build_fashion_mnist(cfg: Any) -> DataSplits:
    """Fashion-MNIST (Xiao et al. 2017): 60k/10k 28x28 grey clothing images, via ``FashionMNIST``; with
    ``dataset.root`` null, Debian's ``dataset-fashion-mnist`` files are used when installed."""
    return _mnist_like(cfg, "FashionMNIST", "fashion_mnist", FASHION_MNIST_MEAN, FASHION_MNIST_STD,
                       system_dir=DEBIAN_FASHION_MNIST)
