"""What every dataset builder shares: the registry, the splits it returns, its option readers, :func:`build`.

Every dataset is one ``(cfg) -> DataSplits`` function registered in :data:`DATASETS` plus one YAML file in
``conf/dataset/``.

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

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ..errors import ConfigError
from ..registry import Registry

DATASETS: Registry[Callable[[Any], "DataSplits"]] = Registry("dataset.name")


@dataclass
class DatasetOptions:
    """The keys every dataset takes (a builder's own options dataclass extends it, given as ``options=`` to
    ``DATASETS.register``); :func:`build` handles them for every dataset."""

    name: str = ""
    input_shape: Optional[list[int]] = None
    num_classes: Optional[int] = None
    split_seed: int = 0
    limit: Optional[int] = None
    eval_limit: Optional[int] = None


@dataclass
class FileDatasetOptions(DatasetOptions):
    """A dataset read from files under ``root`` (torchvision's formats): ``download`` fetches the official files
    when they are missing; a validation split is carved from the official train set; ``mean`` / ``std``: null
    for the dataset's standard constants."""

    root: Optional[str] = None
    download: bool = False
    val_fraction: float = 0.1
    mean: Optional[list[float]] = None
    std: Optional[list[float]] = None

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
def option(cfg: Any, key: str, default: Any = None) -> Any:
    """``cfg.key`` for a DictConfig or a dict; ``default`` when absent or null."""
    value = cfg.get(key, None) if cfg is not None else None
    return default if value is None else value


def fraction_option(cfg: Any, key: str, default: float) -> float:
    value = option(cfg, key, default)
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"dataset.{key}", value, "a number in [0, 1)") from None
    if not 0.0 <= f < 1.0:
        raise ConfigError(f"dataset.{key}", value, "a number in [0, 1)")
    return f


def int_option(cfg: Any, key: str, default: Optional[int], minimum: int) -> Optional[int]:
    value = option(cfg, key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"dataset.{key}", value, f"an integer >= {minimum}" + (" or null" if default is None else ""))
    return int(value)


def data_root(cfg: Any) -> str:
    """``dataset.root`` as an absolute path (relative paths are relative to the directory the app was started
    in, also under Hydra); defaults to ``$PRUNELAB_DATA`` or ``data``."""
    root = str(option(cfg, "root", os.environ.get("PRUNELAB_DATA", "data")))
    root = os.path.expanduser(root)
    if not os.path.isabs(root):
        try:
            from hydra.utils import to_absolute_path

            root = to_absolute_path(root)
        except Exception:  # hydra missing or not usable: relative to the current directory
            root = os.path.abspath(root)
    return root


def constant_option(cfg: Any, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
    value = option(cfg, key, None)
    if value is None:
        return default
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"dataset.{key}", value, f"a list of {len(default)} numbers, or null") from None
    if len(out) != len(default) or (key == "std" and any(v <= 0 for v in out)):
        raise ConfigError(f"dataset.{key}", value, f"a list of {len(default)} numbers (std > 0), or null")
    return out


def normalise(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel, in place on a float ``[N, C, H, W]`` tensor."""
    m = torch.tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return x.sub_(m).div_(s)


def subset(ds: TensorDataset, n: Optional[int], seed: int) -> TensorDataset:
    """A seeded random subset of ``n`` samples (the whole set when ``n`` is None or >= its size)."""
    size = len(ds)
    if n is None or n >= size:
        return ds
    idx = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return TensorDataset(*(t[idx] for t in ds.tensors))


def carve_val(
    x: Tensor, y: Tensor, val_fraction: float, seed: int
) -> tuple[TensorDataset, TensorDataset]:
    """Shuffle the official train set with ``seed`` and split off ``round(val_fraction * N)`` for validation."""
    n = x.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * n))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    return TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[val_idx], y[val_idx])


# -------------------------------------------------------------------------------------------------- build
def build(cfg: Any) -> DataSplits:
    """Build the dataset named by ``cfg.name`` (a DictConfig or a dict).

    After the registered builder ran: ``limit`` caps the train split and ``eval_limit`` the val and test
    splits (seeded random subsets, seed ``split_seed``), and ``input_shape`` / ``num_classes``, when the
    config states them, must match the data (models read them from the config by interpolation).
    """
    name = option(cfg, "name")
    DATASETS.get(str(name))
    DATASETS.parse(str(name), cfg)
    splits = _guard_download(cfg, lambda: DATASETS.get(str(name))(cfg))
    seed = int(option(cfg, "split_seed", 0))
    limit = int_option(cfg, "limit", None, 1)
    eval_limit = int_option(cfg, "eval_limit", None, 1)
    splits.train = subset(splits.train, limit, seed)
    splits.val = subset(splits.val, eval_limit, seed + 1)
    splits.test = subset(splits.test, eval_limit, seed + 2)

    shape = option(cfg, "input_shape")
    if shape is not None and tuple(int(s) for s in shape) != tuple(splits.input_shape):
        raise ConfigError("dataset.input_shape", list(shape), f"the {name} data has shape {list(splits.input_shape)}")
    num_classes = option(cfg, "num_classes")
    if num_classes is not None and int(num_classes) != splits.num_classes:
        raise ConfigError("dataset.num_classes", num_classes, f"the {name} data has {splits.num_classes} classes")
    return splits


def _guard_download(cfg: Any, load: Callable[[], DataSplits]) -> DataSplits:
    """``load()``; with ``download=true``, a failed download (no network, a server error) is a one-line
    :class:`ConfigError`, and what it created under ``root`` is removed (the files already there stay)."""
    if not option(cfg, "download", False):
        return load()
    root = data_root(cfg)
    before = _tree(root)
    try:
        return load()
    except ConfigError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:  # urllib's URLError is an OSError
        _remove_new(root, before)
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError("dataset.download", True, "a network connection to the dataset's server, or "
                          f"dataset.download=false with the files under dataset.root={root} ({type(exc).__name__}: "
                          f"{first})") from None


def _tree(root: str) -> set[str]:
    out = {root} if os.path.exists(root) else set()
    for dirpath, dirnames, filenames in os.walk(root):
        out.update(os.path.join(dirpath, n) for n in dirnames + filenames)
    return out


def _remove_new(root: str, before: set[str]) -> None:
    """Remove the files and folders under ``root`` that were not in ``before`` (deepest first)."""
    for path in sorted(_tree(root) - before, key=len, reverse=True):
        try:
            os.rmdir(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
        except OSError:
            pass


def missing_files(root: str, name: str, detail: str) -> ConfigError:
    return ConfigError(
        "dataset.root",
        root,
        f"no {name} files there (expected {detail}); set dataset.download=true to fetch them, "
        "or point dataset.root at a copy",
    )
