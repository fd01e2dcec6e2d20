"""Patterns: how element scores become keep-masks, and over which scope the target is counted.

A weight is viewed as 2-D: Linear ``[out, in]``; Conv ``[out, k... * in]`` (the reference's ``permute(0, 2, 3, 1)``:
input channels fastest, so a ``1xM`` block or an N:M group spans input channels at one kernel position, as
sparse tensor cores expect). Patterns:

* ``NxM`` blocks: N consecutive output rows x M consecutive columns; ``1x1`` is unstructured, ``4x1`` the
  reference's default. A block's score is the mean of its elements (``block_reduce``: ``sum`` or ``max``).
* ``N:M``: keep the N highest of every M consecutive weights along the input dimension (2:4 is what sparse
  tensor cores run). A group is either left dense or made N:M; groups are ranked by the mean score of the
  weights N:M would remove, so a target t makes ``floor(t * groups * M / (M - N))`` groups N:M and at most
  ``(M - N) / M`` of the weights can go.
* ``channel``: whole output channels (rows of the 2-D view), ranked by their reduced score.

Scope ``global`` ranks the blocks of all layers together (one selection); ``local`` gives each layer the target.

Rounding, stated once: a target t prunes exactly ``floor(t * B)`` of the B blocks in scope (N:M: groups as
above), with t * B rounded to 1e-6 first so that 0.29 x 100 blocks is 29, not 28. Per-layer bounds are counts
too: at least ``ceil(min_sparsity_ratio_per_op * B_l)`` and at most ``floor(max_sparsity_ratio_per_op * B_l)``
blocks of layer l; where a bound and the target disagree, the bound wins. The lowest scores are pruned; equal
scores are broken by position (the earlier block in layer order, then row-major order, is pruned first), so the
same scores always give the same mask.
"""
from __future__ import annotations

import functools
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from .errors import ConfigError

log = logging.getLogger("prunelab")

_BLOCK = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")
_NM = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
REDUCES = ("mean", "sum", "max")
SCOPES = ("global", "local")
PATTERN_HELP = "'NxM' blocks (e.g. 1x1, 4x1, 1x4), 'N:M' with 0 < N < M (e.g. 2:4) or 'channel'"


def as_2d(t: Tensor) -> Tensor:
    """The 2-D view of a weight: [out, in] for Linear, [out, k... * in] (input channels fastest) for Conv."""
    if t.dim() == 2:
        return t
    if t.dim() < 2:
        return t.reshape(1, -1)
    return t.movedim(1, -1).reshape(t.shape[0], -1)


def from_2d(t2: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of :func:`as_2d` for a tensor of the given weight shape."""
    if len(shape) == 2:
        return t2
    if len(shape) < 2:
        return t2.reshape(shape)
    moved = (shape[0], *shape[2:], shape[1])
    return t2.reshape(moved).movedim(-1, 1)


def _count(x: float) -> float:
    return round(x, 6)


def lowest_k(x: Tensor, k: int) -> Tensor:
    """Bool mask of exactly the ``k`` lowest entries of 1-D ``x``; ties go to the lower index.

    One selection of the k-th smallest value (not a sort) plus comparisons; a cumulative count only when ties
    straddle that value. On the CPU the work runs in numpy on a view of ``x`` (:func:`kth_smallest_np`, and
    numpy's comparisons, about 3x faster than torch's into bool); elsewhere ``torch.kthvalue``. Both pick the
    same value, so the mask is the same.
    """
    n = x.numel()
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=x.device)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=x.device)
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        a = x.detach().numpy()
        return torch.from_numpy(_lowest_k_of(a, kth_smallest_np(a, k), k, np.count_nonzero))
    return _lowest_k_of(x, torch.kthvalue(x, k).values, k, torch.count_nonzero)


_SAMPLE = 4096


@functools.lru_cache(maxsize=16)
def _sample_positions(n: int) -> np.ndarray:
    """Fixed random positions to sample ``n`` entries at (drawn once per size; random, not strided, so that a
    layer's row structure cannot bias the sample)."""
    return np.random.default_rng(n).integers(0, n, _SAMPLE)


def kth_smallest_np(a: np.ndarray, k: int) -> Any:
    """The k-th smallest (1-based) entry of 1-D ``a``, exactly as a full selection would give it.

    A full ``np.partition`` (introselect) is ~10x faster than ``torch.kthvalue`` on the CPU, but slows down
    ~10x when most entries are equal, as the zero scores of already pruned weights are late in a schedule. So
    a fixed-seed sample first brackets the k-th value between two sample quantiles ``lo < v <= hi``; the
    entries in that bracket (a few percent of ``a``, none of the ties at or below ``lo``) are counted and
    partitioned alone. If the bracket misses (rare, or an adversarial sample), the full partition decides.
    """
    n = a.size
    if n <= 16 * _SAMPLE:
        return np.partition(a, k - 1)[k - 1]
    sample = a[_sample_positions(n)]
    q = k / n
    margin = 4.0 * math.sqrt(q * (1.0 - q) / _SAMPLE) + 2.0 / _SAMPLE
    i_lo, i_hi = math.floor((q - margin) * _SAMPLE), math.ceil((q + margin) * _SAMPLE)
    if 0 <= i_lo < i_hi < _SAMPLE:
        sample.partition((i_lo, i_hi))
        lo, hi = sample[i_lo], sample[i_hi]
        at_or_below = int(np.count_nonzero(a <= lo))
        if at_or_below >= k:  # the k-th value is lo itself when fewer than k lie strictly below it
            if int(np.count_nonzero(a < lo)) < k:
                return lo
        else:
            inside = a[(a > lo) & (a <= hi)]
            if k - at_or_below <= inside.size:
                j = k - at_or_below - 1
                return np.partition(inside, j)[j]
    return np.partition(a, k - 1)[k - 1]


def _lowest_k_of(x: Any, thr: Any, k: int, nnz: Callable[[Any], Any]) -> Any:
    """The mask of :func:`lowest_k` from the k-th smallest value ``thr`` (numpy array or tensor alike)."""
    upto = x <= thr
    if int(nnz(upto)) == k:  # no tie straddles the threshold (the usual case): one pass
        return upto
    below = x < thr
    need = k - int(nnz(below))
    eq = x == thr
    if need >= int(nnz(eq)):
        return below | eq
    return below | (eq & (eq.cumsum(0) <= need))


def kept_in_groups(groups: Tensor, n: int) -> Tensor:
    """Bool mask over groups ``[..., M]`` keeping the ``n`` highest of each; the ``M - n`` lowest go, and of equal
    scores the earlier goes first (the order of a stable ascending sort, as for blocks).

    On the CPU a weight's rank in its group comes from ``M * (M - 1)`` vectorised comparisons in numpy, ~8x
    faster than torch's sort of millions of 4-element rows; elsewhere (and for M > 16) a stable argsort.
    """
    m = groups.shape[-1]
    if groups.device.type == "cpu" and groups.dtype in (torch.float32, torch.float64) and m <= 16:
        x = np.ascontiguousarray(groups.detach().numpy().reshape(-1, m).T)  # [M, groups]: rows contiguous
        keep = np.empty(x.shape, dtype=bool)
        for i in range(m):
            rank = np.zeros(x.shape[1], dtype=np.uint8)  # how many of the group sort before weight i
            for j in range(m):
                if j != i:
                    rank += (x[j] <= x[i]) if j < i else (x[j] < x[i])
            np.greater_equal(rank, m - n, out=keep[i])
        return torch.from_numpy(np.ascontiguousarray(keep.T)).reshape(groups.shape)
    order = torch.argsort(groups, dim=-1, stable=True)
    keep = torch.ones_like(groups, dtype=torch.bool)
    keep.scatter_(-1, order[..., : m - n], False)
    return keep


@dataclass
class _Layer:
    """One layer's blocks: their scores (1-D), how many there are, and how to turn pruned blocks into a mask."""

    name: str
    blocks: Tensor
    expand: Callable[[Tensor], Tensor]  # pruned-blocks bool [B] -> keep mask in the weight's shape
    lo: int
    hi: int


class Pattern:
    """Turns scores into keep-masks (bool, True = kept) at a target sparsity.

    Args:
        pattern: ``"NxM"``, ``"N:M"`` or ``"channel"``.
        scope: ``"global"`` (one ranking over all layers) or ``"local"`` (each layer reaches the target).
        block_reduce: how an NxM block's or a channel's element scores become one score: mean, sum or max.
        min_sparsity_ratio_per_op / max_sparsity_ratio_per_op: bounds on every layer's sparsity.
    """

    def __init__(
        self,
        pattern: str = "1x1",
        scope: str = "global",
        block_reduce: str = "mean",
        min_sparsity_ratio_per_op: float = 0.0,
        max_sparsity_ratio_per_op: float = 0.98,
    ) -> None:
        self.pattern = str(pattern).strip()
        self.kind, self.n, self.m = self.parse(self.pattern)
        if scope not in SCOPES:
            raise ConfigError("pattern.scope", scope, f"one of {', '.join(SCOPES)}")
        if block_reduce not in REDUCES:
            raise ConfigError("pattern.block_reduce", block_reduce, f"one of {', '.join(REDUCES)}")
        lo, hi = float(min_sparsity_ratio_per_op), float(max_sparsity_ratio_per_op)
        if not 0.0 <= lo < 1.0:
            raise ConfigError("pattern.min_sparsity_ratio_per_op", lo, "a number in [0, 1)")
        if not 0.0 < hi <= 1.0:
            raise ConfigError("pattern.max_sparsity_ratio_per_op", hi, "a number in (0, 1]")
        if lo > hi:
            raise ConfigError(
                "pattern.min_sparsity_ratio_per_op", lo, f"<= pattern.max_sparsity_ratio_per_op ({hi})"
            )
        self.scope = scope
        self.block_reduce = block_reduce
        self.min_ratio = lo
        self.max_ratio = hi

    @staticmethod
    def parse(pattern: str) -> tuple[str, int, int]:
        """``"4x1"`` -> ("block", 4, 1); ``"2:4"`` -> ("nm", 2, 4); ``"channel"`` -> ("channel", 1, 0)."""
        text = str(pattern).strip().lower()
        if text == "channel":
            return "channel", 1, 0
        if mt := _BLOCK.match(text):
            n, m = int(mt.group(1)), int(mt.group(2))
            if n >= 1 and m >= 1:
                return "block", n, m
        if mt := _NM.match(text):
            n, m = int(mt.group(1)), int(mt.group(2))
            if 0 < n < m:
                return "nm", n, m
        raise ConfigError("pattern.type", pattern, PATTERN_HELP)

    # --- what a layer's shape allows ---
    @property
    def removable_fraction(self) -> float:
        """The most of a block the pattern removes: 1 for blocks and channels, (M - N) / M for N:M."""
        return (self.m - self.n) / self.m if self.kind == "nm" else 1.0

    @property
    def max_sparsity(self) -> float:
        """The highest sparsity this pattern with its per-op bound can reach."""
        return min(self.max_ratio, self.removable_fraction)

    def skip_reason(self, shape: torch.Size | tuple[int, ...]) -> str | None:
        """Why a weight of this shape cannot be tiled (None if it can)."""
        if len(shape) < 2:
            return f"a {len(shape)}-D weight has no rows and columns to tile"
        rows = int(shape[0])
        cols = int(math.prod(shape[1:]))
        if self.kind == "block" and (rows % self.n or cols % self.m):
            return f"2-D view [{rows}, {cols}] is not divisible into {self.n}x{self.m} blocks"
        if self.kind == "nm" and cols % self.m:
            return f"2-D view [{rows}, {cols}]: {cols} inputs are not divisible into groups of {self.m}"
        return None

    def num_blocks(self, shape: torch.Size | tuple[int, ...]) -> int:
        rows, cols = int(shape[0]), int(math.prod(shape[1:]))
        if self.kind == "channel":
            return rows
        if self.kind == "nm":
            return rows * cols // self.m
        return (rows // self.n) * (cols // self.m)

    # --- scores -> blocks ---
    def _reduce(self, t: Tensor, dims: tuple[int, ...]) -> Tensor:
        if self.block_reduce == "mean":
            return t.mean(dim=dims)
        if self.block_reduce == "sum":
            return t.sum(dim=dims)
        return t.amax(dim=dims)

    def _layer(self, name: str, score: Tensor) -> _Layer:
        shape = score.shape
        s2 = as_2d(score.float())
        rows, cols = s2.shape
        if self.kind == "channel":
            blocks = self._reduce(s2, (1,))

            def expand(pruned: Tensor) -> Tensor:
                return from_2d((~pruned)[:, None].expand(rows, cols), shape)

        elif self.kind == "block":
            n, m = self.n, self.m
            if n == 1 and m == 1:
                blocks = s2.reshape(-1)
            else:
                blocks = self._reduce(s2.reshape(rows // n, n, cols // m, m), (1, 3)).reshape(-1)

            def expand(pruned: Tensor) -> Tensor:
                keep = (~pruned).reshape(rows // n, 1, cols // m, 1).expand(rows // n, n, cols // m, m)
                return from_2d(keep.reshape(rows, cols), shape)

        else:  # N:M
            n, m = self.n, self.m
            groups = s2.reshape(rows, cols // m, m)
            keep_in_group = kept_in_groups(groups, n)
            removed = groups.masked_fill(keep_in_group, 0.0).sum(-1) / (m - n)
            blocks = removed.reshape(-1)

            def expand(pruned: Tensor) -> Tensor:
                keep = keep_in_group | ~pruned.reshape(rows, cols // m, 1)
                return from_2d(keep.reshape(rows, cols), shape)

        b = blocks.numel()
        frac = self.removable_fraction
        lo = min(b, math.ceil(_count(self.min_ratio * b / frac)))
        hi = min(b, math.floor(_count(self.max_ratio * b / frac)))
        return _Layer(name, blocks, expand, lo, hi)

    def block_target(self, target: float, num_blocks: int) -> int:
        """How many of ``num_blocks`` blocks a target sparsity prunes (see the module docstring)."""
        return min(num_blocks, math.floor(_count(target * num_blocks / self.removable_fraction)))

    # --- the masks ---
    @torch.no_grad()
    def masks(self, scores: Mapping[str, Tensor], target: float) -> dict[str, Tensor]:
        """Keep-masks (bool, the weights' shapes) pruning the lowest-scored blocks to ``target``."""
        layers = [self._layer(name, s) for name, s in scores.items()]
        if not layers:
            return {}
        if self.scope == "local":
            pruned = [
                lowest_k(lay.blocks, min(max(self.block_target(target, lay.blocks.numel()), lay.lo), lay.hi))
                for lay in layers
            ]
        else:
            pruned = self._global(layers, target)
        return {lay.name: lay.expand(p) for lay, p in zip(layers, pruned)}

    def _global(self, layers: list[_Layer], target: float) -> list[Tensor]:
        sizes = [lay.blocks.numel() for lay in layers]
        k = self.block_target(target, sum(sizes))
        k = min(max(k, sum(lay.lo for lay in layers)), sum(lay.hi for lay in layers))
        # One selection over all layers; a layer it pushes past its max is held at its max (its own selection)
        # and the others share the rest, again with one selection (water-filling; usually one round).
        fixed: dict[int, Tensor] = {}
        free, budget = list(range(len(layers))), k
        while free:
            flat = torch.cat([layers[i].blocks for i in free])
            pruned = lowest_k(flat, budget).split([sizes[i] for i in free])
            counts = torch.stack([torch.count_nonzero(p) for p in pruned]).tolist()
            if any(c < layers[i].lo for c, i in zip(counts, free)):
                return self._global_bounded(layers, k)
            over = [i for c, i in zip(counts, free) if c > layers[i].hi]
            if not over:
                fixed.update(zip(free, pruned))
                break
            for i in over:
                fixed[i] = lowest_k(layers[i].blocks, layers[i].hi)
                budget -= layers[i].hi
            free = [i for i in free if i not in over]
        return [fixed[i] for i in range(len(layers))]

    def _global_bounded(self, layers: list[_Layer], k: int) -> list[Tensor]:
        """Exact selection when min bounds bind: every layer first prunes its `lo` lowest blocks; of its blocks
        ranked lo..hi-1, the globally lowest make up the rest. Bounds hold by construction."""
        sizes = [lay.blocks.numel() for lay in layers]
        forced = [lowest_k(lay.blocks, lay.lo) for lay in layers]
        eligible = [lowest_k(lay.blocks, lay.hi) & ~f for lay, f in zip(layers, forced)]
        inf = torch.tensor(float("inf"), device=layers[0].blocks.device)
        masked = torch.cat([torch.where(e, lay.blocks, inf) for lay, e in zip(layers, eligible)])
        rest = k - sum(lay.lo for lay in layers)
        extra = lowest_k(masked, rest).split(sizes)
        return [f | (x & e) for f, x, e in zip(forced, extra, eligible)]

    def __repr__(self) -> str:
        return (
            f"Pattern({self.pattern!r}, scope={self.scope!r}, block_reduce={self.block_reduce!r}, "
            f"min_sparsity_ratio_per_op={self.min_ratio}, max_sparsity_ratio_per_op={self.max_ratio})"
        )
