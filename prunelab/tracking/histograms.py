"""Score histograms: fixed bins, computed on the scores' device, one pass for every layer and ``all``."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor


@torch.no_grad()
def score_histogram(scores: Tensor, bins: int = 64, log_scale: bool = True) -> dict[str, Any]:
    """A fixed-bin histogram of one score tensor, computed on its device (see :func:`histograms`).

    Returns ``counts`` (``bins`` ints), ``edges`` (``bins + 1`` floats, log10 units when ``log_scale``),
    ``zeros``, ``numel``, ``log_scale``; ``counts`` plus ``zeros`` add up to the element count.
    """
    return histograms({"x": scores}, bins, log_scale)["x"]


@torch.no_grad()
def histograms(scores: Mapping[str, Tensor], bins: int, log_scale: bool) -> dict[str, dict[str, Any]]:
    """One histogram per layer plus ``all`` over every layer's scores, on shared fixed bins.

    Scores span orders of magnitude, so by default the bins are over log10(score) and zeros (pruned weights
    under magnitude/snip) are counted apart in ``zeros`` (non-finite scores too). All layers of a step share one
    range (the smallest positive to the largest score), so their histograms are comparable and ``all`` is their
    sum. Computed on the scores' device, with one host sync for the range and one for the counts. When every
    score is finite (the usual case), zeros are clamped up to the smallest positive score before the log (a log
    of 0 takes a slow path on CPUs), land in bin 0 and are taken out of it again by their count.

    Signed scores (GraSP's, movement's) have no log: a step whose scores include a negative one is binned
    linearly (its dicts say ``log_scale: False``), so no score is counted as a zero that is not one.
    """
    if not scores:
        return {}
    flats = {name: s.detach().reshape(-1).float() for name, s in scores.items()}
    dev = next(iter(flats.values())).device
    inf = torch.tensor(float("inf"), device=dev)
    sums, lows, highs, mins = [], [], [], []
    for x in flats.values():
        sums.append(x.sum())  # finite exactly when no score is NaN or inf (or the sum overflows: exact path)
        lows.append(torch.where(x > 0, x, inf).min() if log_scale else x.min())
        highs.append(x.max())
        mins.append(torch.where(x.isnan(), inf, x).min())  # the smallest score (NaN aside): below 0 means signed
    stats = torch.stack([torch.stack(sums).sum(), torch.stack(lows).min(), torch.stack(highs).max(),
                         torch.stack(mins).min()]).tolist()
    if log_scale and stats[3] < 0:  # signed scores: linear bins, over the range from the smallest score
        log_scale, stats[1] = False, stats[3]
    if not all(math.isfinite(v) for v in stats[:3]):  # non-finite scores, or nothing positive on a log scale
        return _histograms_exact(flats, bins, log_scale)
    lo_lin, hi_lin = stats[1], stats[2]
    lo, hi = (math.log10(lo_lin), math.log10(hi_lin)) if log_scale else (lo_lin, hi_lin)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    scale = bins / (hi - lo)
    small = torch.uint8 if bins < 256 else torch.int32  # bincount is ~2.5x faster over bytes than over int64
    counts, apart = [], []
    for x in flats.values():
        v = x.clamp_min(lo_lin).log10_() if log_scale else x.clone()
        idx = v.sub_(lo).mul_(scale).floor_().clamp_(0, bins - 1).to(small)
        counts.append(torch.bincount(idx, minlength=bins + 1))
        apart.append(torch.count_nonzero(x <= 0) if log_scale else torch.zeros((), dtype=torch.int64, device=dev))
    table = torch.stack(counts)
    nonpos = torch.stack(apart)
    table[:, 0] -= nonpos  # zeros were clamped into bin 0: move them to the zeros column
    table[:, bins] += nonpos
    return _histogram_dicts(flats, table.tolist(), lo, hi, bins, log_scale)


def _histograms_exact(flats: Mapping[str, Tensor], bins: int, log_scale: bool) -> dict[str, dict[str, Any]]:
    """:func:`histograms` for scores with NaN or inf (or nothing positive on a log scale): every entry is tested
    for being countable, and the range is taken over the countable ones."""
    dev = next(iter(flats.values())).device
    inf = torch.tensor(float("inf"), device=dev)
    lows, highs = [], []
    for x in flats.values():
        finite = torch.isfinite(x)
        ok = finite & (x > 0) if log_scale else finite
        lows.append(torch.where(ok, x, inf).min())
        highs.append(torch.where(ok, x, -inf).max())
    lo_hi = torch.stack([torch.stack(lows).min(), torch.stack(highs).max()])
    if log_scale:
        lo_hi = lo_hi.log10()
    lo, hi = lo_hi.tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):  # nothing countable (all zero): any range will do
        lo, hi = 0.0, 1.0
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    scale = bins / (hi - lo)
    counts = []
    for x in flats.values():
        v = x.log10() if log_scale else x.clone()
        countable = torch.isfinite(v)
        idx = v.sub_(lo).mul_(scale).floor_().clamp_(0, bins - 1).nan_to_num_(0.0).to(torch.int64)
        idx.masked_fill_(~countable, bins)  # the extra last bin counts zeros and non-finite scores
        counts.append(torch.bincount(idx, minlength=bins + 1))
    return _histogram_dicts(flats, torch.stack(counts).tolist(), lo, hi, bins, log_scale)


def _histogram_dicts(
    flats: Mapping[str, Tensor], rows: list[list[int]], lo: float, hi: float, bins: int, log_scale: bool
) -> dict[str, dict[str, Any]]:
    """Per layer (counts of the bins, then the zeros column) and ``all`` (their sum) as plain dicts."""
    edges = [lo + i * (hi - lo) / bins for i in range(bins + 1)]
    out = {}
    for name, row, x in zip(flats, rows, flats.values()):
        out[name] = {"counts": row[:bins], "edges": edges, "zeros": int(row[bins]), "numel": int(x.numel()),
                     "log_scale": bool(log_scale)}
    total = [sum(col) for col in zip(*rows)]
    out["all"] = {"counts": total[:bins], "edges": edges, "zeros": int(total[bins]),
                  "numel": sum(int(x.numel()) for x in flats.values()), "log_scale": bool(log_scale)}
    return out
