"""LAMP: magnitude rescaled within each layer so that one global threshold gives layer-adaptive sparsity."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .base import PruningCriterion, ScoreHook, register_criterion


def lamp_scores(weight: Tensor, workspace: "LampWorkspace | None" = None, out: Tensor | None = None) -> Tensor:
    """LAMP scores of one layer (float32, the weight's shape; written into ``out`` when given): with the squared
    weights sorted ascending, ``W_u^2 / sum_{v >= u} W_v^2``. Equal weights are ordered by position, so the earlier
    one gets the lower score (its tail includes the later one), as the exact-count rule breaks ties; zeros (pruned
    weights) score 0.

    On the CPU, one numpy sort of float64 keys that carry the position below the square (:func:`_lamp_np`) sorts
    and breaks ties at once, ~10x faster than ``torch.sort``;
    from ~20% zeros on, the zeros are left out of the sort (they add nothing to any tail), so pruning steps after
    the first sort only the kept weights; a :class:`LampWorkspace` kept between calls spares the page faults of
    fresh buffers.
    Elsewhere a stable ``torch.sort``. The tail sums run in float64.
    """
    w = weight.detach().reshape(-1).float()
    if w.device.type != "cpu":
        result = _lamp_torch(w.square()).reshape(weight.shape)
        return result if out is None else out.copy_(result)
    ws = workspace or LampWorkspace()
    direct = out is not None and out.dtype == torch.float32 and out.device.type == "cpu" and out.is_contiguous()
    result = _lamp_np(w.numpy(), ws, out.view(-1).numpy() if direct else None)
    if direct:
        return out
    result = torch.from_numpy(result).reshape(weight.shape)
    return result if out is None else out.copy_(result)


def _lamp_torch(sq: Tensor) -> Tensor:
    """:func:`lamp_scores` of squares ``sq`` (1-D) with a stable ``torch.sort``, on their device."""
    nz = torch.nonzero(sq).flatten()
    vals, order = torch.sort(sq[nz].double(), stable=True)
    out = torch.zeros_like(sq)
    out[nz[order]] = (vals / vals.flip(0).cumsum(0).flip(0)).float()
    return out


class LampWorkspace:
    """Scratch arrays for :func:`_lamp_np`, grown to the largest layer and reused for every layer and step: fresh
    megabyte buffers cost a page fault per 4 KiB on every call, as much as the sort itself."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def array(self, name: str, n: int, dtype: type) -> np.ndarray:
        """The first ``n`` entries of buffer ``name`` (contents undefined, except ``positions``: 0, 1, 2, ...)."""
        buf = self._arrays.get(name)
        if buf is None or buf.size < n:
            buf = np.arange(n, dtype=dtype) if name == "positions" else np.empty(n, dtype)
            self._arrays[name] = buf
        return buf[:n]


#: A float32 widened to float64 leaves the low 29 of the 52 mantissa bits zero: a key keeps the position there
_POSITION_BITS = 29
_POSITION_MASK = (1 << _POSITION_BITS) - 1


def _lamp_np(w: np.ndarray, workspace: LampWorkspace | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`lamp_scores` of float32 weights ``w`` (1-D), on the CPU (into ``out`` when given).

    One sort of float64 keys: ``-(square widened to float64, with the position in the low mantissa bits)``. Every
    float32 has at most 24 significant bits, so the position never reaches the square's bits, and the keys sort
    ascending exactly as the (square, position) pairs sort descending: the largest first, and of equal squares the
    later position first (zeros, kept in the sort while nearly all weights are, become tiny negatives and come
    last). Masking the keys then gives the negated squares and the positions as contiguous int64/float64 arrays;
    the running sum of the negated squares is the negated tail sum bit for bit (rounding is symmetric), and so is
    each quotient. numpy's SIMD sort of doubles is ~2x faster than its sort of integers and ~10x torch's sort.
    """
    ws = workspace or LampWorkspace()
    out = np.empty(w.size, np.float32) if out is None else out
    if w.size > _POSITION_MASK + 1:  # positions would not fit beside the square: the stable torch.sort path
        np.copyto(out, _lamp_torch(torch.from_numpy(w).square()).numpy())
        return out
    nonzero = np.not_equal(w, 0, out=ws.array("nonzero", w.size, np.bool_))  # pruned weights may be -0.0
    kept = int(np.count_nonzero(nonzero))
    # nearly all kept (before the first pruning step): the zeros are sorted along (they score 0 / tail = 0),
    # cheaper than gathering the nonzeros; from ~20% zeros on, sorting only the nonzeros (the rest of out is 0) is
    # faster (measured on a 784x300 layer: equal at ~18% zeros, 1.8x faster at 50%)
    whole = kept > 0 and 5 * kept >= 4 * w.size
    if not whole:
        out.fill(0)
        if kept == 0:
            return out
    keys = _sorted_keys(torch.from_numpy(w), None if whole else torch.from_numpy(np.flatnonzero(nonzero)), ws)
    k = keys.numpy().view(np.float64)
    if np.isnan(k[-1]) or np.isneginf(k[0]):  # an inf or NaN weight: its key is no longer ordered (torch's sort)
        np.copyto(out, _lamp_torch(torch.from_numpy(w).square()).numpy())
        return out
    # the keys split in place into positions and negated squares (fewer buffers: less of the cache evicted)
    n = keys.numel()
    at = torch.bitwise_and(keys, _POSITION_MASK, out=torch.from_numpy(ws.array("order", n, np.int64)))
    neg_sq = keys.bitwise_and_(~_POSITION_MASK).view(torch.float64)
    # torch's sequential CPU cumsum: numpy's sums bit for bit, ~6x faster; the quotient in float64, rounded once
    neg_tail = torch.cumsum(neg_sq, 0, out=torch.from_numpy(ws.array("tail", n, np.float64)))
    if neg_tail[-1] == 0:  # every square is 0 (weights so small that they square to 0): every score is 0
        out.fill(0)
        return out
    score = torch.div(neg_sq, neg_tail, out=torch.from_numpy(ws.array("picked", n, np.float32)))  # picked: done
    torch.from_numpy(out).scatter_(0, at, score)  # ~1.6x numpy's fancy-index assignment
    return out


def _sorted_keys(w: Tensor, at: Tensor | None, ws: LampWorkspace) -> Tensor:
    """The keys of :func:`_lamp_np` (int64) of the weights ``w`` at positions ``at`` (None: all), sorted as
    float64: the negated float32 square, widened, or-ed with the position."""
    n = w.numel() if at is None else at.numel()
    picked = torch.from_numpy(ws.array("picked", n, np.float32))
    if at is None:
        torch.mul(w, w, out=picked)
    else:
        torch.index_select(w, 0, at, out=picked)  # ~3x faster than w[at]
        picked.mul_(picked)
    key = torch.from_numpy(ws.array("key", n, np.int64))
    key.view(torch.float64).copy_(picked.neg_())
    key.bitwise_or_(torch.from_numpy(ws.array("positions", n, np.int64)) if at is None else at)
    key.numpy().view(np.float64).sort()
    return key


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
        workspace = self.__dict__.setdefault("_workspace", LampWorkspace())  # scratch only: not in the state
        for score, weight in zip(self._score_list, self._weights):
            lamp_scores(weight, workspace, out=score)
