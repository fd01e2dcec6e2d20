"""Calibration batches for model-level criteria (SNIP at init, GraSP, SynFlow, Wanda): drawn from the training
split with a generator of their own, without augmentation, so that scoring never moves the training RNG or the
data order, and every data-parallel rank scores on the same samples."""
from __future__ import annotations

import torch
from torch import Tensor

from ..criteria.base import Calibration
from ..errors import ConfigError

Batch = tuple[Tensor, Tensor]
_SALT = 999_983


def check_calibration(y: Tensor, request: Calibration, batch_size: int) -> None:
    """The one-line :class:`ConfigError` :func:`calibration_batches` would raise for training labels ``y``, raised
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


def calibration_batches(x: Tensor, y: Tensor, request: Calibration, batch_size: int, seed: int) -> list[Batch]:
    """``request.batches`` batches of ``request.batch_size`` (default ``batch_size``) samples from a seeded
    permutation; with ``request.per_class``, one batch of that many samples of every class (classes in order)."""
    check_calibration(y, request, batch_size)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + _SALT)
    perm = torch.randperm(len(x), generator=gen).to(x.device)
    if request.per_class:
        labels = y[perm]
        idx = torch.cat([perm[labels == c][: request.per_class] for c in torch.unique(y).tolist()])
        return [(x[idx], y[idx])]
    bs = request.batch_size or batch_size
    return [(x[perm[i * bs:(i + 1) * bs]], y[perm[i * bs:(i + 1) * bs]]) for i in range(request.batches)]
