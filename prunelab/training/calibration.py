"""Calibration batches for model-level criteria (SNIP at init, GraSP, SynFlow, Wanda): drawn from the training
split with a generator of their own, without augmentation, so that scoring never moves the training RNG or the
data order, and every data-parallel rank scores on the same samples. :func:`calibration_indices` picks the
samples (from the labels alone), so the in-memory and the streaming batch sources pick the same ones."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ..criteria.base import Calibration
from ..errors import ConfigError

Batch = tuple[Tensor, Tensor]
_SALT = 999_983


def check_calibration(y: Tensor, request: Calibration, batch_size: int) -> None:
    """The one-line :class:`ConfigError` :func:`calibration_indices` would raise for training labels ``y``, raised
    now (the app calls it before any file is written; the batches are drawn only at the pruning step)."""
    if request.per_class:
        classes, counts = torch.unique(y, return_counts=True)
        fewest = int(counts.argmin())
        if int(counts[fewest]) < request.per_class:
            raise ConfigError("criterion.samples_per_class", request.per_class,
                              f"at most {int(counts[fewest])}: class {int(classes[fewest])} has only that many "
                              "training samples")
        return
    bs = request.batch_size or batch_size
    if request.batches * bs > len(y):
        raise ConfigError("criterion.batches", request.batches,
                          f"at most {len(y) // bs} batches of {bs}: the training split has {len(y)} samples")


def calibration_indices(y: Tensor, request: Calibration, batch_size: int, seed: int) -> list[Tensor]:
    """The train-split positions of each calibration batch: ``request.batches`` batches of ``request.batch_size``
    (default ``batch_size``) samples from a seeded permutation; with ``request.per_class``, one batch of that many
    samples of every class (classes in order)."""
    check_calibration(y, request, batch_size)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + _SALT)
    perm = torch.randperm(len(y), generator=gen).to(y.device)
    if request.per_class:
        labels = y[perm]
        return [torch.cat([perm[labels == c][: request.per_class] for c in torch.unique(y).tolist()])]
    bs = request.batch_size or batch_size
    return [perm[i * bs:(i + 1) * bs] for i in range(request.batches)]


def calibration_batches(x: Tensor, y: Tensor, request: Calibration, batch_size: int, seed: int) -> list[Batch]:
    """The calibration batches of in-memory tensors ``x``, ``y`` (see :func:`calibration_indices`)."""
    return [(x[idx], y[idx]) for idx in calibration_indices(y, request, batch_size, seed)]


def split_calibration(ds: Any, labels: Tensor, request: Calibration, batch_size: int, seed: int) -> list[Batch]:
    """The calibration batches of a train split of either kind (``TensorDataset``, or a streamed
    ``SampleDataset``, read sample by sample without augmentation), on the CPU; ``labels`` are its labels in
    order. The same samples as :func:`calibration_batches` of the split held in memory."""
    if isinstance(ds, TensorDataset):
        return calibration_batches(ds.tensors[0], ds.tensors[1], request, batch_size, seed)
    plain = ds.plain() if hasattr(ds, "plain") else ds
    out = []
    for idx in calibration_indices(torch.as_tensor(labels), request, batch_size, seed):
        samples = [plain[int(i)] for i in idx]
        out.append((torch.stack([s[0] for s in samples]), torch.stack([torch.as_tensor(s[1]) for s in samples])))
    return out
