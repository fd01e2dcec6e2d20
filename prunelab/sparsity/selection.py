"""Exact-count selection: which k of n scores are the lowest (ties broken by position), without a sort.

On the CPU the work runs in numpy on a view of the scores (:func:`kth_smallest_np`, and numpy's comparisons,
about 3x faster than torch's into bool); elsewhere ``torch.kthvalue``. Both pick the same value, so the mask is the
same everywhere.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor


def round_count(x: float) -> float:
    """A count before floor/ceil, rounded to 1e-6 so that 0.29 x 100 blocks is 29, not 28."""
    return round(x, 6)


def lowest_k(x: Tensor, k: int) -> Tensor:
    """Bool mask of exactly the ``k`` lowest entries of 1-D ``x``; ties go to the lower index.

    One selection of the k-th smallest value (not a sort) plus comparisons; a cumulative count only when ties
    straddle that value.
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


def highest_k(x: Tensor, k: int) -> Tensor:
    """Bool mask of exactly the ``k`` highest entries of 1-D ``x``; of equal values the later index is taken: the
    complement of ``lowest_k(x, n - k)``, in one comparison when no tie straddles the threshold (the usual case)."""
    n = x.numel()
    if k <= 0 or k >= n or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64):
        return ~lowest_k(x, n - k)
    a = x.detach().numpy()
    above = a > kth_smallest_np(a, n - k)
    if int(np.count_nonzero(above)) == k:
        return torch.from_numpy(above)
    return ~lowest_k(x, n - k)


def highest_k_positions(x: Tensor, k: int) -> Tensor:
    """The ascending flat positions of exactly the ``k`` highest entries of 1-D ``x`` (those of :func:`highest_k`).

    For a few highest of many (RigL's growth: ~2.5% of a layer) on the CPU, the entries above a value that a
    sample puts safely below the k-th highest are found in one pass and ranked alone: every entry of the top k is
    among them (at least k entries are above that value), and so is every tie at the k-th value, so the result is
    exactly :func:`highest_k`'s (NaN, above every number, is in the tail). Elsewhere, or when the sample misses,
    that function's.
    """
    n = x.numel()
    if (0 < k <= n >> 4 and n > 16 * _SAMPLE and x.device.type == "cpu"
            and x.dtype in (torch.float32, torch.float64)):
        a = x.detach().numpy()
        q = 1.0 - k / n
        i = math.floor((q - 4.0 * math.sqrt(q * (1.0 - q) / _SAMPLE) - 2.0 / _SAMPLE) * _SAMPLE)
        if i >= 0:
            low = np.partition(a[_sample_positions(n)], i)[i]  # the sample's i-th smallest
            above = np.less_equal(a, low)
            at = np.flatnonzero(np.logical_not(above, out=above))  # NaN counts as above, as in a full selection
            if k <= at.size <= n >> 3:
                return torch.from_numpy(np.compress(highest_k(torch.from_numpy(a.take(at)), k).numpy(), at))
    from .maskops import true_positions

    return true_positions(highest_k(x, k))


_SAMPLE = 4096


@functools.lru_cache(maxsize=16)
def _sample_positions(n: int) -> np.ndarray:
    """Fixed random positions to sample ``n`` entries at (drawn once per size; random, not strided, so that a
    layer's row structure cannot bias the sample), ascending: the gather then runs forward through memory."""
    return np.sort(np.random.default_rng(n).integers(0, n, _SAMPLE))


def kth_smallest_np(a: np.ndarray, k: int) -> Any:
    """The k-th smallest (1-based) entry of 1-D ``a``, exactly as a full selection would give it.

    A full ``np.partition`` (introselect) is ~10x faster than ``torch.kthvalue`` on the CPU, but slows down
    ~10x when most entries are equal, as the zero scores of already pruned weights are late in a schedule. So a
    sorted fixed-seed sample supplies candidate values, and exact counts (``a <= v``: one vectorised pass each,
    ~10x cheaper than extracting entries) narrow a bracket ``lo < v_k <= hi`` around the k-th value; the few
    entries left in it (under 1/64 of ``a``, none of the ties at or below ``lo``) are extracted and partitioned
    alone (~1.4x faster than extracting the sample's first bracket at 265k scores). A bracket that stays wide is
    a block of ties at ``hi`` (then ``hi`` is the answer) or a sample that missed: then the full partition
    decides.
    """
    n = a.size
    if n <= 16 * _SAMPLE:
        return np.partition(a, k - 1)[k - 1]
    s = np.sort(a[_sample_positions(n)])
    # sample indices lo < hi (lo = -1: below every entry, hi = _SAMPLE: above every entry) and exact counts
    # below = #(a <= s[lo]) < k <= upto = #(a <= s[hi])
    lo, hi, below, upto = -1, _SAMPLE, 0, n
    # first the sample quantiles 4 standard errors either side of k / n (the k-th value is between them unless
    # the sample is far off), then where the counts put it (every other probe halves the bracket instead)
    q = k / n
    margin = 4.0 * math.sqrt(q * (1.0 - q) / _SAMPLE) + 2.0 / _SAMPLE
    first = [math.floor((q - margin) * _SAMPLE), math.ceil((q + margin) * _SAMPLE)]
    for probe in range(8):
        if hi - lo <= 1 or upto - below <= n >> 6:
            break
        if first:
            i = first.pop(0)
        else:
            i = lo + round((k - below) / (upto - below) * (hi - lo)) if probe % 2 == 0 else (lo + hi) // 2
        i = min(max(i, lo + 1), hi - 1)
        if hi < _SAMPLE and s[i] == s[hi]:  # a tie with the upper bound tells nothing: probe the value below it
            i = int(np.searchsorted(s, s[hi], "left")) - 1
            if i <= lo:
                break
        c = int(np.count_nonzero(a <= s[i]))
        if c >= k:
            hi, upto = i, c
        else:
            lo, below = i, c
    top = s[hi] if hi < _SAMPLE else None
    if top is not None and upto - below > n >> 6 and int(np.count_nonzero(a < top)) < k:
        return top  # the k-th value is the upper bound itself (a block of ties)
    if top is None and lo < 0:
        return np.partition(a, k - 1)[k - 1]
    inside = (a <= top) if lo < 0 else (a > s[lo]) if top is None else (a > s[lo]) & (a <= top)
    inside = np.compress(inside, a)  # ~1.3x faster than boolean indexing
    j = k - below - 1
    if not 0 <= j < inside.size or inside.size > n >> 3:  # NaN (above every value) or a missed sample
        return np.partition(a, k - 1)[k - 1]
    return np.partition(inside, j)[j]


def _lowest_k_of(x: Any, thr: Any, k: int, nnz: Callable[[Any], Any]) -> Any:
    """The mask of :func:`lowest_k` from the k-th smallest value ``thr`` (numpy array or tensor alike). NaN ranks
    above every number, as a sort puts it: a NaN ``thr`` takes every number, then the earliest NaNs."""
    if bool(thr != thr):
        below = x == x
        eq = ~below
    else:
        upto = x <= thr
        if int(nnz(upto)) == k:  # no tie straddles the threshold (the usual case): one pass
            return upto
        below = x < thr
        eq = x == thr
    need = k - int(nnz(below))
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


def lowest_k_rows(x: Tensor, k: int) -> Tensor:
    """Bool mask of exactly the ``k`` lowest entries of every row of 2-D ``x``; ties go to the lower column.

    One ``kthvalue`` per row (a selection, not a sort) and comparisons; a cumulative count along the rows settles
    ties at the k-th value, as :func:`lowest_k` does for one row.
    """
    rows, cols = x.shape
    if k <= 0:
        return torch.zeros(rows, cols, dtype=torch.bool, device=x.device)
    if k >= cols:
        return torch.ones(rows, cols, dtype=torch.bool, device=x.device)
    thr = torch.kthvalue(x, k, dim=1, keepdim=True).values
    below = x < thr
    eq = x == thr
    need = k - below.sum(1, keepdim=True)
    return below | (eq & (eq.cumsum(1) <= need))
