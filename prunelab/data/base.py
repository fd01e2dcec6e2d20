"""What every dataset builder shares: the registry, the splits it returns, its option readers, :func:`build`.

Every dataset is one ``(cfg) -> DataSplits`` function registered in :data:`DATASETS` plus one YAML file in
``conf/dataset/``.

Splits are map-style datasets of ``(x, y)``: ``x`` float32 ``[C, H, W]`` already normalised, ``y`` int64. In
memory they are ``TensorDataset(x, y)`` (the fast path: a trainer moves the tensors to the device once and slices
batches); streamed they are :class:`~prunelab.data.samples.SampleDataset` views of files or arrays that a
``DataLoader`` reads sample by sample through torchvision transforms. :func:`build` chooses by size
(``dataset.in_memory: auto | true | false``; see :func:`resolve_in_memory`). Augmentation comes in two kinds:
a batch-level ``train_transform(x, generator) -> x`` that the trainer applies to each training batch on both
paths (so both give the same batches), and per-sample torchvision ``train_transforms`` that only the streaming
path runs.

Datasets:
- ``digits``: scikit-learn's embedded 8x8 digits (1,797 images; no download), seeded stratified split.
- ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``: read through ``torchvision.datasets`` from ``root``;
  nothing is downloaded unless ``download=true``. A validation split is carved from the official train set.
- ``imagefolder``: an ``ImageFolder`` tree (``root/train/<class>/*.png``, ``root/val/<class>/...``).
- ``torchvision``: any other ``torchvision.datasets`` class by name.

Generic keys handled by :func:`build` for every dataset: ``limit`` (cap on train samples, a seeded random
subset), ``eval_limit`` (same for val and test), and the consistency check of ``input_shape`` /
``num_classes`` against the data actually loaded.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ..errors import ConfigError
from ..options import tristate
from ..registry import Registry
from .samples import SampleDataset, materialise

log = logging.getLogger("prunelab")
Split = Union[TensorDataset, SampleDataset]
#: dataset.memory_budget_gb when a config does not say: splits up to this size (as float32) are held in memory
DEFAULT_MEMORY_BUDGET_GB = 2.0

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
    in_memory: Any = "auto"  #: auto | true | false (see :func:`resolve_in_memory`)
    memory_budget_gb: float = DEFAULT_MEMORY_BUDGET_GB


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
    that the trainer applies to training batches only (on both paths). ``mean`` / ``std`` are the per-channel
    constants the images were normalised with (``x = (pixel - mean) / std``, pixels in [0, 1]). ``in_memory``
    says which path the trainer takes: slices of tensors on the device, or a ``DataLoader`` (which also streams
    ``TensorDataset`` splits when ``dataset.in_memory=false``).
    """

    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, ...]
    num_classes: int
    name: str
    train_transform: Optional[Transform] = None
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    in_memory: bool = True
    identity: dict[str, Any] = field(default_factory=dict)  # what a checkpoint records of the data (see identify)

    @property
    def per_sample(self) -> bool:
        """True when the train split has per-sample transforms (which only the streaming path runs)."""
        return isinstance(self.train, SampleDataset) and self.train.per_sample

    def train_labels(self) -> Tensor:
        """The labels of the train split, in order (without reading any image on the streaming path)."""
        return self.train.targets if isinstance(self.train, SampleDataset) else self.train.tensors[1]

    def nbytes(self) -> int:
        """Bytes the three splits take (or would take) in memory as float32 tensors."""
        return sum(s.nbytes(self.input_shape) if isinstance(s, SampleDataset)
                   else sum(t.numel() * t.element_size() for t in s.tensors) for s in (self.train, self.val, self.test))


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


def subset(ds: Split, n: Optional[int], seed: int) -> Split:
    """A seeded random subset of ``n`` samples (the whole set when ``n`` is None or >= its size)."""
    size = len(ds)
    if n is None or n >= size:
        return ds
    idx = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:n].sort().values
    return ds.select(idx) if isinstance(ds, SampleDataset) else TensorDataset(*(t[idx] for t in ds.tensors))


def val_split(n: int, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """``(train_idx, val_idx)``: the official train set shuffled with ``seed``, ``round(val_fraction * N)`` for
    validation (what :func:`carve_val` splits tensors by)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * n))
    return perm[n_val:], perm[:n_val]


def carve_val(
    x: Tensor, y: Tensor, val_fraction: float, seed: int
) -> tuple[TensorDataset, TensorDataset]:
    """Shuffle the official train set with ``seed`` and split off ``round(val_fraction * N)`` for validation."""
    train_idx, val_idx = val_split(x.shape[0], val_fraction, seed)
    return TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[val_idx], y[val_idx])


# -------------------------------------------------------------------------------------------------- build
def build(cfg: Any) -> DataSplits:
    """Build the dataset named by ``cfg.name`` (a DictConfig or a dict).

    After the registered builder ran: ``limit`` caps the train split and ``eval_limit`` the val and test
    splits (seeded random subsets, seed ``split_seed``), and ``input_shape`` / ``num_classes``, when the
    config states them, must match the data (models read them from the config by interpolation). Then the
    splits are held in memory or streamed (:func:`resolve_in_memory`).
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
        if not transformed(splits):
            raise ConfigError("dataset.input_shape", list(shape), f"the {name} data has shape "
                              f"{list(splits.input_shape)} (transforms such as Resize can give another)")
        splits.input_shape = tuple(int(s) for s in shape)  # the transforms' output: check_sample_shape checks it
    num_classes = option(cfg, "num_classes")
    if num_classes is not None and int(num_classes) != splits.num_classes:
        raise ConfigError("dataset.num_classes", num_classes, f"the {name} data has {splits.num_classes} classes")
    check_sample_shape(splits)
    splits.identity = identify(splits)
    if not len(splits.val):
        print(f"[prunelab] no validation split (dataset.val_fraction={option(cfg, 'val_fraction', None)}): no "
              "evaluation during training; the run reports test accuracy only", flush=True)
    splits.in_memory = resolve_in_memory(cfg, splits)
    if splits.in_memory:
        for split in ("train", "val", "test"):
            ds = getattr(splits, split)
            if isinstance(ds, SampleDataset):
                setattr(splits, split, materialise(ds, splits.input_shape))
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


def identify(splits: DataSplits) -> dict[str, Any]:
    """What a checkpoint records of the data it was trained on, the same on both data paths: each split's size and
    a digest of its labels and, for a folder of files, of its files' paths (relative to the folder), in order.
    A resume compares it (:func:`check_same_data`): files added, removed, renamed or relabelled since are caught;
    an image edited in place is not (its pixels are not read for this)."""
    out: dict[str, Any] = {"name": splits.name}
    for split in ("train", "val", "test"):
        ds = getattr(splits, split)
        digest = hashlib.sha256()
        labels = ds.targets if isinstance(ds, SampleDataset) else ds.tensors[1]
        digest.update(labels.to(torch.int64).contiguous().numpy().tobytes())
        files = getattr(ds, "base", None)
        if files is not None and hasattr(files, "samples") and hasattr(files, "root"):  # an ImageFolder
            for j in ds.indices.tolist():
                digest.update(os.path.relpath(files.samples[j][0], files.root).encode() + b"\0")
        out[split] = f"{len(ds)} samples, {digest.hexdigest()[:16]}"
    return out


def check_same_data(saved: Optional[Mapping[str, Any]], splits: DataSplits, step: int) -> None:
    """A resume continues on the data its checkpoint was trained on (a checkpoint of an earlier version, without
    the record, resumes with a note that its data is not checked)."""
    if not saved:
        log.warning("prunelab: the checkpoint of step %d does not record its data (an earlier version wrote it): "
                    "resuming without checking that the data is the same", step)
        return
    if not splits.identity or saved == splits.identity:
        return
    diff = [f"{k}: {saved.get(k)} then, {splits.identity.get(k)} now" for k in splits.identity
            if saved.get(k) != splits.identity.get(k)]
    raise ConfigError("dataset", splits.name, f"the data the checkpoint of step {step} was trained on ("
                      f"{'; '.join(diff)}): restore it, or train on the new data in a new hydra.run.dir")


def transformed(splits: DataSplits) -> bool:
    """Whether a split goes through configured transforms (which set the shape the model sees)."""
    return any(isinstance(ds, SampleDataset) and (ds.pipeline.transforms or ds.plain_pipeline.transforms)
               for ds in (splits.train, splits.val, splits.test))


def check_sample_shape(splits: DataSplits) -> None:
    """A streamed split's pipeline must run on its images and give images of ``input_shape`` (checked on its first
    sample), the same on every split: a transform that fails there (``Resize`` to size 0, a crop larger than the
    image, ``Normalize`` on a PIL image) or a shape other than the model's is one line naming the transforms."""
    seen: dict[str, tuple[str, list[str], tuple[int, ...]]] = {}  # split -> (key, transforms, shape)
    for split in ("train", "val", "test"):
        ds = getattr(splits, split)
        if not (isinstance(ds, SampleDataset) and len(ds)):
            continue
        key = "train_transforms" if ds.pipeline.augment else "eval_transforms"  # train: eval's when not augmented
        names = [repr(t) for t in ds.pipeline.transforms]
        try:
            seen[split] = key, names, tuple(ds[0][0].shape)
        except ConfigError as exc:  # on the first image: the transforms, not the file, are at fault
            if not hasattr(exc, "reason"):
                raise
            raise ConfigError(f"dataset.{key}", names, f"transforms that run on the {split} split's images, then "
                              f"/ 255 and dataset.mean/std ({exc.reason})") from None
    want, shapes = tuple(splits.input_shape), {shape for _, _, shape in seen.values()}
    for split, (key, names, shape) in seen.items():
        if shape == want:
            continue
        fix = "add Resize/CenterCrop: the other splits' images have that shape" if want in shapes else \
            f"add Resize/CenterCrop, or set dataset.input_shape={list(shape)}" if len(shapes) == 1 else \
            "make train_transforms and eval_transforms give one shape (dataset.image_size sets both defaults)"
        raise ConfigError(f"dataset.{key}", names, f"transforms that give images of dataset.input_shape "
                          f"{list(want)} (the {split} split's are {list(shape)}: {fix})")


def resolve_in_memory(cfg: Any, splits: DataSplits) -> bool:
    """``dataset.in_memory``: ``true`` holds every split in memory as tensors (refused when the train split has
    per-sample transforms, which only the streaming path runs), ``false`` streams them through a DataLoader,
    ``auto`` holds them in memory when they have no per-sample transforms and take at most
    ``dataset.memory_budget_gb`` (default 2) as float32. The budget is a number in the config, not this machine's
    free memory, so that a config takes the same path, and gives the same batches, on every machine."""
    mode = tristate("dataset.in_memory", option(cfg, "in_memory", "auto"))
    budget = option(cfg, "memory_budget_gb", DEFAULT_MEMORY_BUDGET_GB)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
        raise ConfigError("dataset.memory_budget_gb", budget, "a number of GiB >= 0")
    if mode is True and splits.per_sample:
        raise ConfigError("dataset.in_memory", True, "false or auto: dataset.train_transforms are per-sample "
                          "transforms, which only the streaming path runs (or set dataset.train_transforms=[])")
    if mode is not None:
        keep, why = mode, f"dataset.in_memory={str(mode).lower()}"
    else:
        size = splits.nbytes()
        keep = not splits.per_sample and size <= budget * 2**30
        has_budget = option(cfg, "memory_budget_gb", None) is not None  # a key of the datasets that may not fit
        why = "per-sample train transforms" if splits.per_sample else \
            f"{size / 2**20:.1f} MiB as float32" + (f" vs budget {budget:g} GiB" if has_budget else "")
    print(f"[prunelab] dataset {splits.name} {'in memory' if keep else 'streamed'} ({why})", flush=True)  # stdout:
    # stderr carries only warnings and the one-line error of a refused run
    return keep


def missing_files(root: str, name: str, detail: str) -> ConfigError:
    return ConfigError(
        "dataset.root",
        root,
        f"no {name} files there (expected {detail}); set dataset.download=true to fetch them, "
        "or point dataset.root at a copy",
    )
