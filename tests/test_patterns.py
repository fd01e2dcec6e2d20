"""Patterns: scores -> keep-masks. Hand-checked masks, exact counts, bounds, ties, Conv layout, skips."""
from __future__ import annotations

import logging
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from prunelab.errors import ConfigError
import prunelab.sparsity.selection as selection_mod
from prunelab.sparsity.patterns import Pattern, as_2d, from_2d
from prunelab.sparsity.selection import _lowest_k_of, highest_k, kept_in_groups, kth_smallest_np, lowest_k
from prunelab.pruner import Pruner

T, F = True, False


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def b(x):
    return torch.tensor(x, dtype=torch.bool)


def floor_frac(target: float, n: int) -> int:
    """floor(target * n) in exact rational arithmetic (0.29 * 100 = 29, not 28)."""
    return math.floor(Fraction(str(target)) * n)


def pruned(mask: torch.Tensor) -> int:
    return int((~mask).sum())


# --- 1x1 (unstructured) ---
A = [[0.1, 0.4], [0.3, 0.2]]
B = [[0.9, 0.5], [0.6, 0.8]]


def test_unstructured_global_vs_local_by_hand():
    scores = {"a": t(A), "b": t(B)}
    g = Pattern("1x1", scope="global", max_sparsity_ratio_per_op=1.0).masks(scores, 0.5)
    assert torch.equal(g["a"], b([[F, F], [F, F]]))  # the 4 lowest of all 8 are all in a
    assert torch.equal(g["b"], b([[T, T], [T, T]]))
    loc = Pattern("1x1", scope="local").masks(scores, 0.5)
    assert torch.equal(loc["a"], b([[F, T], [T, F]]))  # 0.1 and 0.2 go
    assert torch.equal(loc["b"], b([[T, F], [F, T]]))  # 0.5 and 0.6 go
    g3 = Pattern("1x1", scope="global").masks(scores, 0.3)  # floor(2.4) = 2: 0.1, 0.2
    assert torch.equal(g3["a"], b([[F, T], [T, F]]))
    assert torch.equal(g3["b"], b([[T, T], [T, T]]))


def test_masks_are_bool_and_shaped():
    scores = {"a": t(A), "conv": torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(0))}
    for pat in ("1x1", "4x1", "1x4", "2:4", "channel"):
        masks = Pattern(pat).masks(scores if pat in ("1x1", "channel") else {"conv": scores["conv"]}, 0.4)
        for n, m in masks.items():
            assert m.dtype == torch.bool and m.shape == scores[n].shape


def test_rounding_counts_0_29_of_100_as_29():
    s = {"l": torch.arange(100, dtype=torch.float32).reshape(10, 10)}
    assert pruned(Pattern("1x1", scope="local").masks(s, 0.29)["l"]) == 29
    assert pruned(Pattern("1x1", scope="global").masks(s, 0.57)["l"]) == 57
    # and the lowest go: 0..28
    m = Pattern("1x1").masks(s, 0.29)["l"].reshape(-1)
    assert torch.equal(m, torch.arange(100) >= 29)


# --- NxM blocks ---
def test_4x1_blocks_by_hand_and_reduce():
    # [8, 2]: blocks (rows 0-3, col 0)=0.5 mean, (rows 0-3, col 1)=0.3, (rows 4-7, col 0)=mean .25 max 1,
    # (rows 4-7, col 1)=0.5
    s = torch.full((8, 2), 0.5)
    s[0:4, 1] = 0.3
    s[4:8, 0] = t([0.0, 0.0, 0.0, 1.0])
    mean = Pattern("4x1").masks({"l": s}, 0.5)["l"]
    want = torch.ones(8, 2, dtype=torch.bool)
    want[4:8, 0] = F
    want[0:4, 1] = F
    assert torch.equal(mean, want)
    # sum ranks like mean here
    assert torch.equal(Pattern("4x1", block_reduce="sum").masks({"l": s}, 0.5)["l"], want)
    # max: block (4-7, 0) scores 1.0 and survives; 0.3 goes, then of the two 0.5 blocks the first in order
    mx = Pattern("4x1", block_reduce="max").masks({"l": s}, 0.5)["l"]
    want = torch.ones(8, 2, dtype=torch.bool)
    want[0:4, 1] = F
    want[0:4, 0] = F
    assert torch.equal(mx, want)
    # unstructured would have pruned other weights: the 3 zeros and the 0.3s first
    assert pruned(Pattern("1x1").masks({"l": s}, 0.5)["l"][4:8, 0]) == 3


def test_1x4_blocks_by_hand():
    # [2, 8] -> blocks (row r, cols 0-3), (row r, cols 4-7); means 0.25, 0.6, 0.5, 0.1
    s = t([[0.0, 0.5, 0.5, 0.0, 0.6, 0.6, 0.6, 0.6],
           [0.5, 0.5, 0.5, 0.5, 0.1, 0.1, 0.1, 0.1]])
    m = Pattern("1x4").masks({"l": s}, 0.5)["l"]
    assert torch.equal(m, b([[F] * 4 + [T] * 4, [T] * 4 + [F] * 4]))
    m = Pattern("1x4").masks({"l": s}, 0.25)["l"]  # floor(1): the 0.1 block
    assert torch.equal(m, b([[T] * 8, [T] * 4 + [F] * 4]))


# --- N:M ---
def test_2_4_by_hand():
    # groups: g0 [.1 .9 .2 .8] removed mean .15; g1 [.5 .6 .7 .4] .45; g2 [.05 .03 .9 .9] .04; g3 [.3 .4 .1 .6] .2
    s = t([[0.1, 0.9, 0.2, 0.8, 0.5, 0.6, 0.7, 0.4],
           [0.05, 0.03, 0.9, 0.9, 0.3, 0.4, 0.1, 0.6]])
    p = Pattern("2:4")
    # target 0.25: floor(0.25 * 4 groups * 4 / 2) = 2 groups made 2:4: g2 (.04) and g0 (.15)
    m = p.masks({"l": s}, 0.25)["l"]
    assert torch.equal(m, b([[F, T, F, T, T, T, T, T], [F, F, T, T, T, T, T, T]]))
    # target 0.4: floor(3.2) = 3 groups: + g3 (.2)
    m = p.masks({"l": s}, 0.4)["l"]
    assert torch.equal(m, b([[F, T, F, T, T, T, T, T], [F, F, T, T, F, T, F, T]]))
    # target 0.5: every group 2:4
    m = p.masks({"l": s}, 0.5)["l"]
    assert torch.equal(m, b([[F, T, F, T, F, T, T, F], [F, F, T, T, F, T, F, T]]))
    assert pruned(m) == 8


def test_1_4_and_3_4_counts():
    s = {"l": torch.rand(4, 16, generator=torch.Generator().manual_seed(1))}  # 16 groups of 4
    m = Pattern("1:4").masks(s, 0.75)["l"]  # all groups keep 1
    assert torch.equal((m.reshape(4, 4, 4).sum(-1)), torch.ones(4, 4, dtype=torch.long))
    m = Pattern("3:4").masks(s, 0.1)["l"]  # floor(0.1 * 16 * 4) = 6 groups keep 3
    kept = m.reshape(-1, 4).sum(-1)
    assert int((kept == 3).sum()) == 6 and int((kept == 4).sum()) == 10


# --- channel ---
def test_channel_by_hand():
    s = t([[0.5, 0.5, 0.5], [0.0, 0.1, 0.2], [0.9, 0.9, 0.9], [0.2, 0.2, 0.2]])  # row means .5 .1 .9 .2
    m = Pattern("channel").masks({"l": s}, 0.5)["l"]
    assert torch.equal(m, b([[T] * 3, [F] * 3, [T] * 3, [F] * 3]))
    m = Pattern("channel", block_reduce="max").masks({"l": s}, 0.25)["l"]  # row maxes .5 .2 .9 .2 -> row 1 (tie)
    assert torch.equal(m, b([[T] * 3, [F] * 3, [T] * 3, [T] * 3]))


# --- exact counts and structure over random scores, all patterns, both scopes ---
SHAPES = {"fc1": (16, 32), "fc2": (8, 16), "conv": (8, 4, 3, 3)}


def random_scores(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(sh, generator=g) for n, sh in SHAPES.items()}


def blocks_of(pattern: str, shape) -> int:
    rows, cols = shape[0], math.prod(shape[1:])
    if pattern == "channel":
        return rows
    if ":" in pattern:
        return rows * cols // int(pattern.split(":")[1])
    n, m = (int(v) for v in pattern.split("x"))
    return (rows // n) * (cols // m)


def check_structure(pattern: str, mask: torch.Tensor):
    m2 = as_2d(mask)
    rows, cols = m2.shape
    if pattern == "channel":
        assert bool((m2.all(1) | (~m2).all(1)).all()), "channel all-or-nothing"
    elif ":" in pattern:
        n, mm = (int(v) for v in pattern.split(":"))
        kept = m2.reshape(rows, cols // mm, mm).sum(-1)
        assert bool(((kept == n) | (kept == mm)).all()), "N:M groups hold exactly N (or are dense)"
    else:
        n, mm = (int(v) for v in pattern.split("x"))
        blk = m2.reshape(rows // n, n, cols // mm, mm)
        full = blk.all(3).all(1)
        empty = ~blk.any(3).any(1)
        assert bool((full | empty).all()), "blocks all-or-nothing"


@pytest.mark.parametrize("pattern", ["1x1", "4x1", "1x4", "2:4", "channel"])
@pytest.mark.parametrize("scope", ["global", "local"])
@pytest.mark.parametrize("target", [0.0, 0.1, 0.29, 0.37, 0.5])
def test_exact_counts(pattern, scope, target):
    scores = random_scores()
    p = Pattern(pattern, scope=scope)
    masks = p.masks(scores, target)
    assert list(masks) == list(scores)
    for n, mask in masks.items():
        check_structure(pattern, mask)
    nm = ":" in pattern
    if nm:
        keep_n, group = (int(v) for v in pattern.split(":"))
        per_group = group - keep_n
    size = {n: (1 if nm else sc.numel() // blocks_of(pattern, sc.shape)) for n, sc in scores.items()}

    def layer_pruned_blocks(n):
        if nm:
            return pruned(masks[n]) // per_group
        return pruned(masks[n]) // size[n]

    if scope == "global":
        total_blocks = sum(blocks_of(pattern, sc.shape) for sc in scores.values())
        if nm:  # groups made N:M: floor(t * groups * M / (M - N))
            want = math.floor(Fraction(str(target)) * total_blocks * group / per_group)
        else:
            want = floor_frac(target, total_blocks)
        assert sum(layer_pruned_blocks(n) for n in scores) == want
    else:
        for n, sc in scores.items():
            nb = blocks_of(pattern, sc.shape)
            want = math.floor(Fraction(str(target)) * nb * group / per_group) if nm else floor_frac(target, nb)
            assert layer_pruned_blocks(n) == want, n
    # the weights pruned are a `target` fraction, up to one block's rounding per layer
    total = sum(sc.numel() for sc in scores.values())
    assert sum(pruned(m) for m in masks.values()) <= target * total + 1e-9


@pytest.mark.parametrize("pattern", ["1x1", "4x1", "1x4", "2:4", "channel"])
@pytest.mark.parametrize("scope", ["global", "local"])
def test_lowest_blocks_go(pattern, scope):
    """Every pruned block scores <= every kept block (within the ranking's scope)."""
    scores = random_scores(seed=5)
    p = Pattern(pattern, scope=scope)
    masks = p.masks(scores, 0.4)
    layers = {n: p.layer_blocks(n, s) for n, s in scores.items()}

    def block_pruned(n):  # pruned flag per block, read back from the mask
        m2 = as_2d(masks[n])
        rows, cols = m2.shape
        if pattern == "channel":
            return ~m2.all(1)
        if ":" in pattern:
            return ~m2.reshape(rows, cols // 4, 4).all(-1).reshape(-1)
        nn_, mm = (int(v) for v in pattern.split("x"))
        return ~m2.reshape(rows // nn_, nn_, cols // mm, mm).all(3).all(1).reshape(-1)

    groups = [list(scores)] if scope == "global" else [[n] for n in scores]
    for names in groups:
        blk = torch.cat([layers[n].blocks for n in names])
        pr = torch.cat([block_pruned(n) for n in names])
        assert int(pr.sum()) > 0
        assert float(blk[pr].max()) <= float(blk[~pr].min())


# --- per-op bounds ---
def two_layers():
    return {"a": torch.arange(1, 11, dtype=torch.float32).reshape(2, 5),
            "b": torch.arange(11, 21, dtype=torch.float32).reshape(2, 5)}


def test_global_max_bound_binds():
    s = two_layers()
    # unbounded: the 10 lowest of 20 are all of a
    m = Pattern("1x1", max_sparsity_ratio_per_op=1.0).masks(s, 0.5)
    assert (pruned(m["a"]), pruned(m["b"])) == (10, 0)
    # max 0.8: a stops at 8 (scores 1..8), b gives the other 2 (11, 12)
    m = Pattern("1x1", max_sparsity_ratio_per_op=0.8).masks(s, 0.5)
    assert torch.equal(m["a"].reshape(-1), torch.arange(1, 11) > 8)
    assert torch.equal(m["b"].reshape(-1), torch.arange(11, 21) > 12)
    # the default max 0.98 binds too: floor(9.8) = 9 of a, 1 of b
    m = Pattern("1x1").masks(s, 0.5)
    assert (pruned(m["a"]), pruned(m["b"])) == (9, 1)
    assert torch.equal(m["a"].reshape(-1), torch.arange(1, 11) > 9)
    assert torch.equal(m["b"].reshape(-1), torch.arange(11, 21) > 11)


def test_global_min_bound_binds():
    s = two_layers()
    # min 0.3: b must lose ceil(3) = 3 (11, 12, 13); a gives the other 7 (1..7)
    m = Pattern("1x1", min_sparsity_ratio_per_op=0.3, max_sparsity_ratio_per_op=1.0).masks(s, 0.5)
    assert torch.equal(m["a"].reshape(-1), torch.arange(1, 11) > 7)
    assert torch.equal(m["b"].reshape(-1), torch.arange(11, 21) > 13)
    # min 0.25 -> ceil(2.5) = 3 as well
    m = Pattern("1x1", min_sparsity_ratio_per_op=0.25, max_sparsity_ratio_per_op=1.0).masks(s, 0.5)
    assert (pruned(m["a"]), pruned(m["b"])) == (7, 3)
    # a target below the bounds' sum: the bound wins (3 + 3 pruned, not floor(0.1 * 20) = 2)
    m = Pattern("1x1", min_sparsity_ratio_per_op=0.3).masks(s, 0.1)
    assert (pruned(m["a"]), pruned(m["b"])) == (3, 3)


def test_global_both_bounds_with_blocks():
    # 4x1 on [8, 5] layers: 10 blocks each; a's blocks all lower than b's
    a = torch.arange(1, 41, dtype=torch.float32).reshape(8, 5)
    bb = a + 100
    p = Pattern("4x1", min_sparsity_ratio_per_op=0.2, max_sparsity_ratio_per_op=0.6)
    m = p.masks({"a": a, "b": bb}, 0.5)  # 10 blocks: a at most 6, b at least 2 -> 6 + 4 after the rest ranks
    pa, pb = pruned(m["a"]) // 4, pruned(m["b"]) // 4
    assert (pa, pb) == (6, 4)
    for mask in m.values():
        check_structure("4x1", mask)


def test_local_bounds():
    s = two_layers()
    m = Pattern("1x1", scope="local", min_sparsity_ratio_per_op=0.3).masks(s, 0.1)
    assert (pruned(m["a"]), pruned(m["b"])) == (3, 3)
    m = Pattern("1x1", scope="local", max_sparsity_ratio_per_op=0.5).masks(s, 0.9)
    assert (pruned(m["a"]), pruned(m["b"])) == (5, 5)
    assert torch.equal(m["a"].reshape(-1), torch.arange(1, 11) > 5)


def test_nm_bounds_are_sparsity():
    # 2:4 with min 0.25: at least half the groups of each layer made 2:4 (a quarter of its weights)
    g = torch.Generator().manual_seed(2)
    s = {"a": torch.rand(2, 16, generator=g) * 0.1, "b": torch.rand(2, 16, generator=g) + 1}
    m = Pattern("2:4", min_sparsity_ratio_per_op=0.25).masks(s, 0.25)
    assert pruned(m["a"]) == 8 and pruned(m["b"]) == 8
    m = Pattern("2:4").masks(s, 0.25)  # unbounded: a's 8 groups go first
    assert pruned(m["a"]) == 16 and pruned(m["b"]) == 0


# --- ties ---
def test_ties_same_mask_and_lower_position_first():
    s = {"a": torch.ones(2, 4), "b": torch.ones(2, 4)}
    p = Pattern("1x1")
    m1, m2 = p.masks(s, 0.25), p.masks({k: v.clone() for k, v in s.items()}, 0.25)
    for n in s:
        assert torch.equal(m1[n], m2[n])
    # 4 of 16: the first 4 in layer order, then row-major
    assert torch.equal(m1["a"], b([[F, F, F, F], [T, T, T, T]]))
    assert torch.equal(m1["b"], torch.ones(2, 4, dtype=torch.bool))
    m = Pattern("1x1", max_sparsity_ratio_per_op=1.0).masks(s, 0.625)  # 10: all of a, then b's first 2
    assert torch.equal(m["a"], torch.zeros(2, 4, dtype=torch.bool))
    assert torch.equal(m["b"], b([[F, F, T, T], [T, T, T, T]]))
    loc = Pattern("1x1", scope="local").masks(s, 0.375)  # 3 of each layer: its first 3
    for n in s:
        assert torch.equal(loc[n], b([[F, F, F, T], [T, T, T, T]]))


def test_ties_straddling_threshold():
    s = {"l": t([[0.1, 0.5, 0.5, 0.5, 0.9]])}
    m = Pattern("1x1", scope="local").masks(s, 0.4)["l"]  # 2: 0.1 and the first 0.5
    assert torch.equal(m, b([[F, F, T, T, T]]))


def test_ties_blocks_and_groups():
    # 4x1 on [8, 2], all equal: blocks in row-major order over the block grid: (0-3, c0), (0-3, c1), ...
    m = Pattern("4x1", scope="local").masks({"l": torch.ones(8, 2)}, 0.25)["l"]
    want = torch.ones(8, 2, dtype=torch.bool)
    want[0:4, 0] = F
    assert torch.equal(m, want)
    # 2:4 all equal: the first group is made sparse, and in it the earlier weights go
    m = Pattern("2:4", scope="local").masks({"l": torch.ones(1, 8)}, 0.25)["l"]
    assert torch.equal(m, b([[F, F, T, T, T, T, T, T]]))
    m2 = Pattern("2:4", scope="local").masks({"l": torch.ones(1, 8)}, 0.25)["l"]
    assert torch.equal(m, m2)
    # channel ties: the earlier row
    m = Pattern("channel").masks({"l": torch.ones(3, 2)}, 0.34)["l"]
    assert torch.equal(m, b([[F, F], [T, T], [T, T]]))


def test_lowest_k_exact():
    x = t([3.0, 1.0, 2.0, 1.0, 5.0, 1.0])
    assert torch.equal(lowest_k(x, 0), b([F] * 6))
    assert torch.equal(lowest_k(x, 2), b([F, T, F, T, F, F]))
    assert torch.equal(lowest_k(x, 3), b([F, T, F, T, F, T]))
    assert torch.equal(lowest_k(x, 4), b([F, T, T, T, F, T]))
    assert torch.equal(lowest_k(x, 6), b([T] * 6))



@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("n", [50_000, 200_000])  # a full selection; a sample-bracketed one
def test_lowest_k_numpy_and_torch_paths_agree(dtype, n):
    """The CPU path selects in numpy, the GPU path with torch.kthvalue: same k, same ties, same mask.
    float16 has no numpy path here, so it checks the torch path against a sort."""
    g = torch.Generator().manual_seed(5)
    for x in (
        torch.rand(n, generator=g),
        torch.randint(0, 7, (n,), generator=g).float(),  # heavy ties at every threshold
        torch.cat([torch.zeros(n * 3 // 5), torch.rand(n - n * 3 // 5, generator=g)]),  # pruned weights' zeros
    ):
        x = x.to(dtype)
        for k in (1, 17, n // 4, n * 3 // 5, n * 3 // 5 + 1, n - 1):
            got = lowest_k(x, k)
            thr = torch.kthvalue(x.float(), k).values.to(dtype)
            torch_path = _lowest_k_of(x, thr, k, torch.count_nonzero)
            # reference: a stable sort; the k first positions are the k lowest, ties to the lower index
            want = torch.zeros(x.numel(), dtype=torch.bool)
            want[torch.sort(x.float(), stable=True).indices[:k]] = True
            assert int(got.sum()) == k and torch.equal(got, want) and torch.equal(torch_path, want)



@pytest.mark.parametrize("n", [1_000, 200_000])  # a full selection; a sample-bracketed one
def test_highest_k_takes_the_k_largest_and_of_ties_the_later(n):
    """highest_k against a stable sort: the k last positions of the ascending order (ties: the later index), with
    the -inf of drop-and-grow's excluded candidates and heavy ties at the threshold."""
    g = torch.Generator().manual_seed(6)
    excluded = torch.rand(n, generator=g) < 0.1
    for x in (torch.rand(n, generator=g), torch.randint(0, 7, (n,), generator=g).float(),
              torch.rand(n, generator=g).double()):
        x = x.masked_fill(excluded, -math.inf)
        for k in (1, 17, n // 10, n // 2, n - 1):
            want = torch.zeros(n, dtype=torch.bool)
            want[torch.sort(x, stable=True).indices[n - k:]] = True
            assert torch.equal(highest_k(x, k), want)
    assert not highest_k(x, 0).any() and highest_k(x, n).all()


@pytest.mark.parametrize("n", [1_000, 200_000])
def test_nan_ranks_above_every_number_with_exact_counts(n):
    """A NaN score (a diverged gradient) sorts last, as a stable sort has it: the k lowest are the numbers first,
    then the earliest NaNs, and exactly k are chosen (a NaN threshold chose none, and its complement all)."""
    g = torch.Generator().manual_seed(8)
    x = torch.rand(n, generator=g).masked_fill(torch.rand(n, generator=g) < 0.05, math.nan)
    order = torch.sort(x, stable=True).indices
    for k in (1, n // 2, n - n // 40, n - 1):
        want = torch.zeros(n, dtype=torch.bool)
        want[order[:k]] = True
        assert torch.equal(lowest_k(x, k), want), k
        top = torch.zeros(n, dtype=torch.bool)
        top[order[n - k:]] = True
        assert torch.equal(highest_k(x, k), top), k


def test_highest_k_positions_are_those_of_a_stable_sort(monkeypatch):
    """RigL's growth: the positions of the k highest (a few percent of a large layer: one pass for the tail above
    a sampled value, ranked alone) equal the last k of a stable ascending sort, with ties at the k-th value,
    -inf (the kept entries), NaN (above everything, as a full selection has it) and a sample that misses."""
    from prunelab.sparsity.selection import highest_k_positions

    g = torch.Generator().manual_seed(7)
    n = 300_000
    excluded = torch.rand(n, generator=g) < 0.08
    cases = [torch.rand(n, generator=g), torch.randint(0, 400, (n,), generator=g).float(),
             torch.rand(n, generator=g).double(), torch.rand(n, generator=g).masked_fill(excluded[:n], math.nan)]
    for x in cases:
        x = x.masked_fill(excluded, -math.inf) if not x.isnan().any() else x
        for k in (1, 40, 7_500, n // 16, n // 16 + 1, n // 2):
            want = torch.sort(torch.sort(x, stable=True).indices[n - k:]).values
            assert torch.equal(highest_k_positions(x, k), want), k
    x = cases[0]
    order = np.argsort(x.numpy())
    for sampled in (order[: selection_mod._SAMPLE], order[-selection_mod._SAMPLE:]):  # too low, too high
        monkeypatch.setattr(selection_mod, "_sample_positions", lambda size, pos=np.sort(sampled): pos)
        for k in (40, 7_500):
            assert torch.equal(highest_k_positions(x, k), torch.sort(torch.sort(x, stable=True).indices[n - k:]).values)


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (3, 4), (2, 8), (1, 2)])
def test_kept_in_groups_matches_a_stable_sort(n, m):
    """N:M within-group choice: the numpy rank path (CPU) equals a stable argsort (the GPU path), ties included."""
    g = torch.Generator().manual_seed(n * 10 + m)
    for groups in (torch.rand(7, 33, m, generator=g), torch.randint(0, 3, (7, 33, m), generator=g).float()):
        for x in (groups, groups.half()):  # float16 has no numpy path: the torch path
            keep = kept_in_groups(x, n)
            order = torch.sort(x.float(), dim=-1, stable=True).indices
            want = torch.ones_like(x, dtype=torch.bool).scatter_(-1, order[..., : m - n], False)
            assert keep.shape == x.shape and torch.equal(keep, want)

def test_kth_smallest_np_bracket_and_fallback(monkeypatch):
    """The sample bracket gives the exact k-th value, with ties at either end of the bracket, and the full
    selection takes over when the sample misses the k-th value."""
    rng = np.random.default_rng(3)
    n = 300_000
    cases = {
        "uniform": rng.random(n, dtype=np.float32),
        "zeros": np.concatenate([np.zeros(250_000, np.float32), rng.random(50_000, dtype=np.float32)]),
        "few values": rng.integers(0, 5, n).astype(np.float32),
        "skewed": rng.exponential(size=n).astype(np.float32) ** 8,
        "-inf": np.where(rng.random(n) < 0.08, -np.inf, rng.random(n)).astype(np.float32),
        "tie block": np.where(rng.random(n) < 0.3, 0.5, rng.random(n)).astype(np.float32),
        "constant": np.ones(n, np.float32),
        "nan": np.concatenate([np.full(1000, np.nan, np.float32), rng.random(n - 1000, dtype=np.float32)]),
    }
    for name, a in cases.items():
        ref = np.sort(a)  # NaN last, as np.partition puts it
        for k in (1, 2, 1000, 150_000, 249_999, 250_000, 250_001, 299_000, n - 1, n):
            got, want = kth_smallest_np(a, k), ref[k - 1]
            assert got == want or (np.isnan(got) and np.isnan(want)), (name, k)
    # a sample drawn only from the smallest entries brackets the wrong range: the answer is still exact
    a = cases["uniform"]
    for sampled in (np.argsort(a)[: selection_mod._SAMPLE], np.argsort(a)[-selection_mod._SAMPLE:]):  # too low, too high
        monkeypatch.setattr(selection_mod, "_sample_positions", lambda size, pos=sampled: pos)
        for k in (5, 150_000, 290_000):
            assert kth_smallest_np(a, k) == np.sort(a)[k - 1]

# --- Conv layout: [out, kh * kw * in], input channels fastest ---
def test_conv_2d_view_input_channels_fastest():
    w = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)  # [out, in, kh, kw]
    v = as_2d(w)
    assert v.shape == (2, 12)
    # column (i * kw + j) * in + c holds w[o, c, i, j]
    for o in range(2):
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    assert v[o, (i * 2 + j) * 3 + c] == w[o, c, i, j]
    assert torch.equal(from_2d(v, w.shape), w)


def test_conv_1x4_block_spans_input_channels():
    s = torch.ones(2, 4, 2, 2)  # [out, in=4, kh, kw]: 2 rows x 4 blocks of 1x4
    s[0, :, 1, 0] = 0.0  # out 0, kernel position (1, 0), all 4 input channels
    m = Pattern("1x4").masks({"conv": s}, 0.125)["conv"]  # floor(0.125 * 8) = 1 block
    want = torch.ones(2, 4, 2, 2, dtype=torch.bool)
    want[0, :, 1, 0] = F
    assert torch.equal(m, want)


def test_conv_2_4_group_spans_input_channels():
    # score = channel index + 10 * kernel position: in every group (one kernel position, 4 channels)
    # channels 0 and 1 are the two lowest
    c = torch.arange(4, dtype=torch.float32).reshape(1, 4, 1, 1)
    pos = torch.arange(4, dtype=torch.float32).reshape(1, 1, 2, 2) * 10
    s = (c + pos).expand(3, 4, 2, 2).contiguous()
    m = Pattern("2:4").masks({"conv": s}, 0.5)["conv"]
    want = torch.ones(3, 4, 2, 2, dtype=torch.bool)
    want[:, 0:2] = F
    assert torch.equal(m, want)


def test_conv_channel_removes_output_channels():
    s = torch.ones(4, 3, 3, 3)
    s[2] = 0.1
    m = Pattern("channel").masks({"conv": s}, 0.25)["conv"]
    assert not m[2].any() and m[[0, 1, 3]].all()


# --- what a shape allows; skipped layers ---
def test_skip_reason():
    assert Pattern("4x1").skip_reason((6, 3)) is not None
    assert Pattern("4x1").skip_reason((8, 3)) is None
    assert Pattern("1x4").skip_reason((3, 6)) is not None
    assert Pattern("2:4").skip_reason((3, 6)) is not None
    assert Pattern("2:4").skip_reason((3, 8)) is None
    assert Pattern("2:4").skip_reason((3, 2, 2, 2)) is None  # 2-D view [3, 8]
    # a conv's columns are its kernel positions x input channels (channels fastest): the message says so
    assert Pattern("2:4").skip_reason((16, 6, 5, 5)) == ("2-D view [16, 150]: 150 inputs are not divisible into "
                                                       "groups of 4 (a 5x5 kernel x 6 input channels, input channels "
                                                       "fastest)")
    assert Pattern("4x1").skip_reason((6, 3)) == "2-D view [6, 3] is not divisible into 4x1 blocks"
    assert Pattern("1x1").skip_reason((5,)) is not None
    assert Pattern("channel").skip_reason((5, 3)) is None


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.good = nn.Linear(8, 8)
        self.odd_rows = nn.Linear(8, 6)  # [6, 8]: no 4x1 blocks
        self.conv = nn.Conv2d(3, 8, 3)  # [8, 27]: 4x1 ok, 2:4 not

    def forward(self, x):
        return x


def test_untileable_layer_skipped_with_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="prunelab"):
        p = Pruner(Odd(), "magnitude", "4x1", {"target_sparsity": 0.5})
    assert list(p.masks) == ["good", "conv"]
    msgs = [r.getMessage() for r in caplog.records if r.name == "prunelab" and r.levelno == logging.WARNING]
    assert any("odd_rows" in msg for msg in msgs)
    assert not any("good" in msg for msg in msgs)
    info = {li.name: li for li in p.layers()}
    assert not info["odd_rows"].pruned and "4x1" in info["odd_rows"].reason
    assert info["good"].pruned and info["conv"].pruned


def test_untileable_nm_conv_skipped_with_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="prunelab"):
        p = Pruner(Odd(), "magnitude", "2:4", {"target_sparsity": 0.5})
    assert list(p.masks) == ["good", "odd_rows"]  # [6, 8]: 8 inputs are fine for 2:4
    text = " ".join(r.getMessage() for r in caplog.records if r.name == "prunelab")
    assert "conv" in text and "odd_rows" not in text  # [6, 8] has 8 inputs: fine for 2:4


def test_untileable_mapping_entry_skipped_with_warning(caplog):
    mods = {"ok": torch.zeros(4, 4, requires_grad=True), "bad": torch.zeros(4, 6, requires_grad=True)}
    with caplog.at_level(logging.WARNING, logger="prunelab"):
        p = Pruner(mods, "magnitude", "1x4", {"target_sparsity": 0.5})
    assert list(p.masks) == ["ok"]
    assert any("bad" in r.getMessage() for r in caplog.records if r.name == "prunelab")


# --- parsing ---
@pytest.mark.parametrize("text, parsed", [("1x1", ("block", 1, 1)), ("4x1", ("block", 4, 1)),
                                          ("1x4", ("block", 1, 4)), ("2:4", ("nm", 2, 4)),
                                          ("channel", ("channel", 1, 0)), (" 4X1 ", ("block", 4, 1))])
def test_parse(text, parsed):
    assert Pattern.parse(text) == parsed


@pytest.mark.parametrize("bad", ["3x", "4:2", "0x1", "2:2", "abc", "1x0", "0:4", ""])
def test_malformed_pattern(bad):
    with pytest.raises(ConfigError) as e:
        Pattern(bad)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"pattern.type={bad!r}: ")
    assert "N:M" in msg and "channel" in msg


def test_min_above_max():
    with pytest.raises(ConfigError) as e:
        Pattern("1x1", min_sparsity_ratio_per_op=0.6, max_sparsity_ratio_per_op=0.5)
    msg = str(e.value)
    assert "\n" not in msg and "min_sparsity_ratio_per_op" in msg and "0.6" in msg and "0.5" in msg


@pytest.mark.parametrize("kwargs, key", [({"scope": "world"}, "pattern.scope"),
                                         ({"block_reduce": "median"}, "pattern.block_reduce"),
                                         ({"max_sparsity_ratio_per_op": 1.5}, "pattern.max_sparsity_ratio_per_op"),
                                         ({"min_sparsity_ratio_per_op": -0.1}, "pattern.min_sparsity_ratio_per_op")])
def test_other_pattern_errors(kwargs, key):
    with pytest.raises(ConfigError) as e:
        Pattern("1x1", **kwargs)
    assert key in str(e.value) and "\n" not in str(e.value)


def test_max_sparsity():
    assert Pattern("2:4").max_sparsity == 0.5
    assert Pattern("1:4").max_sparsity == 0.75
    assert Pattern("1x1").max_sparsity == 0.98
    assert Pattern("4x1", max_sparsity_ratio_per_op=0.7).max_sparsity == 0.7
