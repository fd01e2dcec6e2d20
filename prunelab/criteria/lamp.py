"""LAMP: magnitude rescaled within each layer so that one global threshold gives layer-adaptive sparsity."""
from __future__ import annotations

import sys

import numpy as np
import torch
from torch import Tensor

from .base import PruningCriterion, ScoreHook, register_criterion


def lamp_scores(weight: Tensor, workspace: "LampWorkspace | None" = None, out: Tensor | None = None) -> Tensor:
    """LAMP scores of one layer (float32, the weight's shape; written into ``out`` when given): with the squared
    weights sorted ascending, ``W_u^2 / sum_{v >= u} W_v^2``. Equal weights are ordered by position, so the earlier
    one gets the lower score (its tail includes the later one), as the exact-count rule breaks ties; zeros (pruned
    weights) score 0.

    On the CPU, one numpy sort of 64-bit keys (the square's float32 bits, which order like the values for
    non-negative floats, above the position) sorts and breaks ties at once, ~10x faster than ``torch.sort``;
    once fewer than half the weights are kept, the zeros are left out of the sort (they add nothing to any tail),
    so later pruning steps sort only the kept weights; a :class:`LampWorkspace` kept between calls spares the page
    faults of fresh buffers.
    Elsewhere a stable ``torch.sort``. The tail sums run in float64.
    """
    w = weight.detach().reshape(-1).float()
    if w.device.type != "cpu":
        result = _lamp_torch(w.square()).reshape(weight.shape)
        return result if out is None else out.copy_(result)
    ws = workspace or LampWorkspace()
    sq = torch.from_numpy(ws.array("square", w.numel(), np.float32))
    torch.square(w, out=sq)
    direct = out is not None and out.dtype == torch.float32 and out.device.type == "cpu" and out.is_contiguous()
    result = _lamp_np(sq.numpy(), ws, out.view(-1).numpy() if direct else None)
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


def _lamp_np(a: np.ndarray, workspace: LampWorkspace | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`lamp_scores` of non-negative float32 squares ``a`` (1-D), in numpy (into ``out`` when given)."""
    ws = workspace or LampWorkspace()
    out = np.empty(a.size, np.float32) if out is None else out
    kept = int(np.count_nonzero(a))
    # most kept (the first pruning steps): the zeros are sorted along (they come first and score 0 / tail = 0),
    # cheaper than gathering the nonzeros; fewer kept: only the nonzeros are sorted, the rest of out is 0
    whole = kept > 0 and kept >= a.size // 2
    if not whole:
        out.fill(0)
        if kept == 0:
            return out
    nz = None if whole else np.flatnonzero(a)
    n = a.size if whole else kept
    # 64-bit keys: the square's float32 bits in the high word (they order like the values), the position in the low
    key = ws.array("key", n, np.uint64)
    words = key.view(np.uint32).reshape(-1, 2)
    low, high = (0, 1) if sys.byteorder == "little" else (1, 0)
    words[:, low] = ws.array("positions", n, np.uint32)
    words[:, high] = (a if whole else a[nz]).view(np.uint32)
    # sorted as float64: a key's high word is a non-negative float32's bits (< 0x7FF00000 even for inf or NaN), so
    # read as a double it is a finite positive number ordered like the integer, and numpy's SIMD sort of doubles
    # is ~2x faster than its sort of 64-bit integers
    key.view(np.float64).sort()
    vals = words[:, high].view(np.float32)
    # from here on in descending order (the largest first), in contiguous buffers: the squares in float64, their
    # running sums (each one's tail), the quotients and the positions they go back to. torch's sequential CPU
    # cumsum gives numpy's sums bit for bit ~6x faster, and its division of contiguous doubles into float32 (in
    # float64, rounded once) is ~4x faster than numpy's over the strided float32 and reversed views
    desc = torch.from_numpy(ws.array("desc", n, np.float64))
    np.copyto(desc.numpy(), vals[::-1])
    tail = torch.from_numpy(ws.array("tail", n, np.float64))
    torch.cumsum(desc, 0, out=tail)
    score = torch.from_numpy(ws.array("score", n, np.float32))
    torch.div(desc, tail, out=score)
    order = ws.array("order", n, np.intp)
    np.copyto(order, words[::-1, low])
    # torch's scatter writes the scores back ~1.6x faster than numpy's fancy-index assignment
    torch.from_numpy(out).scatter_(0, torch.from_numpy(order if whole else nz[order]), score)
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
        workspace = self.__dict__.setdefault("_workspace", LampWorkspace())  # scratch only: not in the state
        for score, weight in zip(self._score_list, self._weights):
            lamp_scores(weight, workspace, out=score)
