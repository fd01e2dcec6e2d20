"""LAMP: magnitude rescaled within each layer so that one global threshold gives layer-adaptive sparsity."""
from __future__ import annotations

import sys

import numpy as np
import torch
from torch import Tensor

from .base import PruningCriterion, ScoreHook, register_criterion


def lamp_scores(weight: Tensor) -> Tensor:
    """LAMP scores of one layer (float32, the weight's shape): with the squared weights sorted ascending,
    ``W_u^2 / sum_{v >= u} W_v^2``. Equal weights are ordered by position, so the earlier one gets the lower score
    (its tail includes the later one), as the exact-count rule breaks ties; zeros (pruned weights) score 0.

    On the CPU, one numpy sort of 64-bit keys (the square's float32 bits, which order like the values for
    non-negative floats, above the position) sorts and breaks ties at once, ~10x faster than ``torch.sort``;
    zeros are left out of the sort (they add nothing to any tail), so later pruning steps sort only the kept
    weights.
    Elsewhere a stable ``torch.sort``. The tail sums run in float64.
    """
    sq = weight.detach().reshape(-1).float().square()
    out = torch.from_numpy(_lamp_np(sq.numpy())) if sq.device.type == "cpu" else _lamp_torch(sq)
    return out.reshape(weight.shape)


def _lamp_torch(sq: Tensor) -> Tensor:
    """:func:`lamp_scores` of squares ``sq`` (1-D) with a stable ``torch.sort``, on their device."""
    nz = torch.nonzero(sq).flatten()
    vals, order = torch.sort(sq[nz].double(), stable=True)
    out = torch.zeros_like(sq)
    out[nz[order]] = (vals / vals.flip(0).cumsum(0).flip(0)).float()
    return out


def _lamp_np(a: np.ndarray) -> np.ndarray:
    """:func:`lamp_scores` of non-negative float32 squares ``a`` (1-D), in numpy."""
    out = np.zeros(a.size, np.float32)
    nz = np.flatnonzero(a)
    if nz.size == 0:
        return out
    # 64-bit keys: the square's float32 bits in the high word (they order like the values), the position in the low
    key = np.empty(nz.size, np.uint64)
    words = key.view(np.uint32).reshape(-1, 2)
    low, high = (0, 1) if sys.byteorder == "little" else (1, 0)
    words[:, low] = np.arange(nz.size, dtype=np.uint32)
    words[:, high] = (a if nz.size == a.size else a[nz]).view(np.uint32)
    # sorted as float64: a key's high word is a non-negative float32's bits (< 0x7FF00000 even for inf or NaN), so
    # read as a double it is a finite positive number ordered like the integer, and numpy's SIMD sort of doubles
    # is ~2x faster than its sort of 64-bit integers
    key.view(np.float64).sort()
    vals = words[:, high].view(np.float32)
    tail = np.cumsum(vals[::-1], dtype=np.float64)[::-1]
    order = words[:, low].astype(np.intp)
    out[order if nz.size == a.size else nz[order]] = vals / tail
    return out


@register_criterion("lamp")
class LampCriterion(PruningCriterion):
    """LAMP: with a layer's squared weights sorted ascending, the u-th one scores ``W_u^2 / sum_{v >= u} W_v^2``,
    computed in ``on_step_begin``.

    Lee, Park, Mo, Ahn & Shin 2021, "Layer-adaptive Sparsity for the Magnitude-based Pruning"
    (https://arxiv.org/abs/2010.07611; reference jaeho-lee/layer-adaptive-sparsity, ``tools/pruners.py``). Within a
    layer the score is monotone in |W|, so it ranks exactly like magnitude; what it changes is how layers compare:
    the largest weight of every layer scores exactly 1 (no layer is ever emptied), and one global threshold then
    gives each layer the sparsity that bounds the model's output distortion. So LAMP needs the ``global``
    distribution (any per-layer split makes it magnitude, and is refused).

    No state (recomputed from the weights at the steps that need scores: one sort per layer, at pruning steps
    only: a sort, not a selection, since every score needs its tail sum; see :func:`lamp_scores`). A pruned weight
    (W = 0) scores 0 and stays pruned.

    Deviations from the reference: it sorts without caring about ties; we sort stably so equal weights keep our
    position rule. The paper defines LAMP for single weights; with a block or channel pattern the pattern reduces
    the weights' LAMP scores (``block_reduce``), which is not a block-level LAMP. The squares are float32 (the
    weights' precision), the tail sums float64.
    """

    paper = "Lee et al. 2021, Layer-adaptive Sparsity for the Magnitude-based Pruning (LAMP)"
    score_hook = ScoreHook.STEP_BEGIN
    distributions = ("global",)
    distributions_reason = ("LAMP rescales magnitude so that layers compare under one threshold; within a layer it "
                            "ranks exactly as magnitude, so with a per-layer split it would be magnitude")

    @torch.no_grad()
    def on_step_begin(self) -> None:
        for score, weight in zip(self._score_list, self._weights):
            score.copy_(lamp_scores(weight))
