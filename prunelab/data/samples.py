"""Per-sample datasets for the streaming path: images read one at a time, through torchvision transforms.

A :class:`SampleDataset` is a view of a base dataset (any ``torchvision.datasets`` class, an ``ImageFolder``, or
:class:`ArrayImages` over a uint8 array already in memory) through a :class:`Pipeline`: the dataset config's
torchvision transforms (``torchvision.transforms.v2`` classes by name), then the fixed tail that every path
shares: pixels to float32 in [0, 1] (``/ 255``) and per-channel normalisation ``(x - mean) / std``.

Keys, not positions, say what a sample is: ``ds[(step_seed, i)]`` runs the pipeline for sample ``i`` with the
random draws of its transforms seeded from ``(step_seed, i)``, where the trainer's sampler makes ``step_seed``
from ``(seed, step)``. So a random crop depends on the run's seed, the step and the sample, never on which
worker process ran it, in which order, or on where a run was resumed. ``ds[i]`` (evaluation, calibration,
loading into memory) seeds from ``(-1, i)``.

:func:`materialise` turns a :class:`SampleDataset` whose pipeline is deterministic into the in-memory
``TensorDataset`` the fast path slices; for :class:`ArrayImages` with no transforms it does so in one vectorised
pass whose values are bitwise those of the per-sample path (the same elementwise float ops).
"""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from ..errors import ConfigError

Key = Any  # an index, or (step_seed, index)


def sample_seed(step_seed: int, index: int) -> int:
    """The seed of one sample's random transforms: unique per (step_seed, index) for index < 2**31."""
    return (step_seed * 2_147_483_659 + index) % (2**63)


def labels_of(base: Any) -> Tensor:
    """The labels of a torchvision-style dataset as int64 (``targets`` or ``labels``; else read sample by sample)."""
    for attr in ("targets", "labels", "_labels"):
        value = getattr(base, attr, None)
        if value is not None:
            return torch.as_tensor(value, dtype=torch.int64)
    return torch.as_tensor([int(base[i][1]) for i in range(len(base))], dtype=torch.int64)


class ArrayImages(Dataset):
    """Images already in memory as a uint8 tensor ``[N, C, H, W]`` (e.g. CIFAR's pickled arrays), with labels."""

    def __init__(self, images: Tensor, targets: Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"ArrayImages wants uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
        self.images, self.targets = images, torch.as_tensor(targets, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], int(self.targets[i])


def build_transforms(spec: Any, key: str) -> list[Callable[..., Any]]:
    """``torchvision.transforms.v2`` objects from a config list: each item a class name (``RandomHorizontalFlip``)
    or a one-key mapping name -> keyword arguments (``{RandomCrop: {size: 32, padding: 4}}``)."""
    if spec is None:
        return []
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(spec, (DictConfig, ListConfig)):
        spec = OmegaConf.to_container(spec, resolve=True)
    if isinstance(spec, (str, Mapping)) or not isinstance(spec, Sequence):
        raise ConfigError(f"dataset.{key}", spec, "a list of torchvision.transforms.v2 names or {Name: {kwargs}}")
    import torchvision.transforms.v2 as v2

    out = []
    for item in spec:
        if isinstance(item, str):
            name, kwargs = item, {}
        elif isinstance(item, Mapping) and len(item) == 1:
            name, kwargs = next(iter(item.items()))
            kwargs = dict(kwargs or {})
        else:
            raise ConfigError(f"dataset.{key}", item, "a transform name or a one-key mapping {Name: {kwargs}}")
        cls = getattr(v2, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, v2.Transform)):
            raise ConfigError(f"dataset.{key}", name, "a torchvision.transforms.v2 transform class, e.g. RandomCrop")
        if isinstance(kwargs.get("dtype"), str):  # YAML has no dtypes: {ToDtype: {dtype: float32, scale: true}}
            dtype = getattr(torch, kwargs["dtype"], None)
            if not isinstance(dtype, torch.dtype):
                raise ConfigError(f"dataset.{key}", {name: kwargs}, "a torch dtype name for dtype, e.g. float32")
            kwargs["dtype"] = dtype
        if name == "ToDtype" and _floating(kwargs.get("dtype")) and not kwargs.get("scale"):
            raise ConfigError(f"dataset.{key}", {name: {**kwargs, "dtype": str(kwargs["dtype"])}}, "scale: true with "
                              "a float dtype (the pipeline divides uint8 images by 255 and takes float ones as "
                              "already in [0, 1]: unscaled, they would be 0-255)")
        try:
            out.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"dataset.{key}", {name: kwargs}, f"arguments {name} accepts ({exc})") from None
    return out


def _floating(dtype: Any) -> bool:
    return isinstance(dtype, torch.dtype) and dtype.is_floating_point or \
        isinstance(dtype, Mapping) and any(_floating(d) for d in dtype.values())


class Pipeline:
    """``transforms`` (torchvision v2, on the uint8 image: PIL or tensor), then ``/ 255`` and ``(x - mean) / std``.

    ``augment`` marks a training pipeline (the config's ``train_transforms``): random per sample, so only the
    streaming path can run it. ``transforms`` draw from torch's and Python's global generators; :meth:`__call__`
    seeds both from the sample's seed and, in the main process, restores them afterwards (a worker's generators
    are its own)."""

    def __init__(self, transforms: Sequence[Callable[..., Any]], mean: Sequence[float], std: Sequence[float],
                 augment: bool = False) -> None:
        self.transforms = list(transforms)
        self.augment = bool(augment) and bool(self.transforms)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def tail(self, x: Any) -> Tensor:
        """An image (PIL, or a uint8 / float tensor ``[C, H, W]`` or ``[N, C, H, W]``) as normalised float32."""
        if not isinstance(x, Tensor):
            from torchvision.transforms.v2.functional import pil_to_tensor

            x = pil_to_tensor(x)
        x = x.as_subclass(Tensor)  # a tv_tensors.Image -> plain tensor
        if x.shape[-3] != self.mean.shape[0]:
            raise ValueError(f"{x.shape[-3]}-channel images, {self.mean.shape[0]} mean/std constants: set "
                             "the channels (dataset.channels for imagefolder, else dataset.input_shape), "
                             "mean and std to match")
        x = x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x.to(torch.float32)
        return x.sub_(self.mean).div_(self.std)

    def __call__(self, image: Any, seed: int) -> Tensor:
        if self.transforms:
            image = self._seeded(image, seed)
        return self.tail(image)

    def _seeded(self, image: Any, seed: int) -> Any:
        in_worker = torch.utils.data.get_worker_info() is not None
        saved = None if in_worker else (torch.get_rng_state(), random.getstate())
        torch.manual_seed(seed)
        random.seed(seed)
        try:
            for t in self.transforms:
                image = t(image)
        finally:
            if saved is not None:
                torch.set_rng_state(saved[0])
                random.setstate(saved[1])
        return image

    def __repr__(self) -> str:
        return f"Pipeline({[type(t).__name__ for t in self.transforms]}, normalise)"


class SampleDataset(Dataset):
    """Samples ``indices`` of ``base`` (``(image, label)`` pairs) through ``pipeline``; ``plain`` is the pipeline
    without augmentation (evaluation, calibration). Returns ``(x float32 [C, H, W], y int64)``."""

    def __init__(self, base: Any, pipeline: Pipeline, indices: Optional[Tensor] = None,
                 plain: Optional[Pipeline] = None, targets: Optional[Tensor] = None) -> None:
        self.base = base
        self.pipeline = pipeline
        self.plain_pipeline = plain or pipeline
        self.indices = torch.arange(len(base)) if indices is None else torch.as_tensor(indices, dtype=torch.int64)
        self._base_targets = labels_of(base) if targets is None else targets

    @property
    def targets(self) -> Tensor:
        """The labels of this dataset's samples, in order."""
        return self._base_targets[self.indices]

    @property
    def per_sample(self) -> bool:
        """True when the pipeline augments per sample (only the streaming path runs it)."""
        return self.pipeline.augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: Key) -> tuple[Tensor, Tensor]:
        step_seed, i = key if isinstance(key, tuple) else (-1, int(key))
        j = int(self.indices[i])
        image = self.base[j][0]
        try:
            x = self.pipeline(image, sample_seed(step_seed, j))
        except ConfigError:
            raise
        except (ValueError, TypeError, RuntimeError, IndexError) as exc:  # one image the transforms cannot take
            raise self._failed(j, exc) from None
        return x, self._base_targets[j]

    def _failed(self, j: int, exc: BaseException) -> ConfigError:
        """The transforms failed on sample ``j``: one line naming its file (or index); a :class:`ConfigError`, so
        it survives a DataLoader worker's re-raise. Its ``reason`` is the transform's own error."""
        samples = getattr(self.base, "samples", None)
        reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
        err = ConfigError("dataset.root", samples[j][0] if samples is not None else f"sample {j}",
                          f"images the transforms {[type(t).__name__ for t in self.pipeline.transforms]} can take "
                          f"({reason})")
        err.reason = reason  # type: ignore[attr-defined]
        return err

    def select(self, idx: Tensor) -> "SampleDataset":
        """The samples at positions ``idx`` of this one (same base, pipelines and labels)."""
        return SampleDataset(self.base, self.pipeline, self.indices[idx], self.plain_pipeline, self._base_targets)

    def plain(self) -> "SampleDataset":
        """The same samples through the pipeline without augmentation."""
        return SampleDataset(self.base, self.plain_pipeline, self.indices, None, self._base_targets)

    def nbytes(self, input_shape: Sequence[int]) -> int:
        """Bytes this split takes in memory as float32 tensors of ``input_shape``."""
        n = 4 * len(self)
        for s in input_shape:
            n *= int(s)
        return n


def materialise(ds: SampleDataset, input_shape: Sequence[int]) -> TensorDataset:
    """All of ``ds`` as one ``TensorDataset`` (its pipeline must be deterministic: the in-memory path)."""
    if ds.per_sample:
        raise ValueError("a dataset with per-sample transforms cannot be materialised")
    y = ds.targets
    if isinstance(ds.base, ArrayImages) and not ds.pipeline.transforms:  # one vectorised pass: the same elementwise ops as per sample
        return TensorDataset(ds.pipeline.tail(ds.base.images[ds.indices]).contiguous(), y)
    if len(ds) == 0:
        return TensorDataset(torch.zeros((0, *input_shape)), y)
    return TensorDataset(torch.stack([ds[i][0] for i in range(len(ds))]), y)
