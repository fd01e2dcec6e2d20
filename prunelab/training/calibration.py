"""Calibration batches for model-level criteria (SNIP at init, GraSP, SynFlow, Wanda): drawn from the training
split with a generator of their own, without augmentation, so that scoring never moves the training RNG or the
data order, and every data-parallel rank scores on the same samples. :func:`calibration_indices` picks the
samples (from the labels alone), so the in-memory and the streaming batch sources pick the same ones."""
from __future__ import annotations

import torch
from torch import Tensor

from ..criteria.base import Calibration
from ..errors import ConfigError

Batch = tuple[Tensor, Tensor]
_SALT = 999_983


def calibration_indices(y: Tensor, request: Calibration, batch_size: int, seed: int) -> list[Tensor]:
    """The train-split positions of each calibration batch: ``request.batches`` batches of ``request.batch_size``
    (default ``batch_size``) samples from a seeded permutation; with ``request.per_class``, one batch of that many
    samples of every class (classes in order)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + _SALT)
    perm = torch.randperm(len(y), generator=gen).to(y.device)
    if request.per_class:
        labels = y[perm]
        picks = []
        for c in torch.unique(y).tolist():
            of_c = perm[labels == c][: request.per_class]
            if len(of_c) < request.per_class:
                raise ConfigError("criterion.samples_per_class", request.per_class,
                                  f"at most {len(of_c)}: class {c} has only that many training samples")
            picks.append(of_c)
        return [torch.cat(picks)]
    bs = request.batch_size or batch_size
    if request.batches * bs > len(y):
        raise ConfigError("criterion.batches", request.batches,
                          f"at most {len(y) // bs} batches of {bs}: the training split has {len(y)} samples")
    return [perm[i * bs:(i + 1) * bs] for i in range(request.batches)]


def calibration_batches(x: Tensor, y: Tensor, request: Calibration, batch_size: int, seed: int) -> list[Batch]:
    """The calibration batches of in-memory tensors ``x``, ``y`` (see :func:`calibration_indices`)."""
    return [(x[idx], y[idx]) for idx in calibration_indices(y, request, batch_size, seed)]
