"""Distributions erk, er and per_row against hand-solved tables (Evci et al. 2020's ERK as jaxpruner's
``sparsity_distributions_test.py`` tabulates it; every integer count below is solved by hand in the comments), the
exact total count, PyTorch weight layouts, the per-op bounds inside the solve, and per-row ranking."""
from __future__ import annotations

import math
import random

import pytest
import torch
from torch import nn

from prunelab.errors import ConfigError
from prunelab.pruner import Pruner
from prunelab.schedule import Schedule
from prunelab.sparsity.distribution import ERDistribution, ERKDistribution, build_distribution
from prunelab.sparsity.patterns import Pattern

UNSTRUCTURED_NO_BOUND = Pattern("1x1", max_sparsity_ratio_per_op=1.0)


def counts(dist, shapes, target, pattern=UNSTRUCTURED_NO_BOUND):
    """Pruned blocks per layer, within the pattern's per-op bounds (what the masks will prune)."""
    sizes = [pattern.num_blocks(s) for s in shapes]
    return dist.layer_targets(sizes, shapes, target, pattern, [pattern.block_bounds(b) for b in sizes])


# jaxpruner's table: shapes a (2, 4), b (3, 6), c (2, 4, 6); n = 8, 18, 48. ERK ratios: 6/8, 9/18, 12/48.
JAX_SHAPES = [(2, 4), (3, 6), (2, 4, 6)]


def test_erk_table_where_a_layer_becomes_dense():
    """s = 0.5. Budget: floor(0.5 n) = 4 + 9 + 24 = 37 zeros. First solve: kept 37 = eps (6 + 9 + 12), eps = 1.370,
    a's density 0.75 eps = 1.03 > 1: a is made dense and eps re-solved over b, c: pruned 18 - 9 eps + 48 - 12 eps
    = 37, eps = 29/21; b prunes 18 - 9 * 29/21 = 5.571 (reference sparsity 0.31), c 48 - 12 * 29/21 = 31.43
    (0.655). Largest remainder: floors 5 + 31 = 36, the one left goes to b (.571 > .429): [0, 6, 31]."""
    got = counts(ERKDistribution(), JAX_SHAPES, 0.5)
    assert got == [0, 6, 31]
    assert sum(got) == 37
    sparsity = [k / math.prod(s) for k, s in zip(got, JAX_SHAPES)]
    assert sparsity == pytest.approx([0.0, 0.31, 0.655], abs=1 / 18)  # the reference's real-valued table, to a weight


def test_erk_fix_up_makes_two_layers_dense_in_turn():
    """s = 0.3: zeros 2 + 5 + 14 = 21, kept 53 = 27 eps: a's density 0.75 * 1.963 > 1, dense; re-solved over b, c
    (66 - 21 eps = 21, eps = 2.143) b's 0.5 * 2.143 > 1, dense too; over c alone 48 - 12 eps = 21, eps = 2.25:
    c prunes all 21 (density 0.25 * 2.25 = 0.5625). Without the fix-up: a -3.8 (!), b 0.33, c 24.4."""
    assert counts(ERKDistribution(), JAX_SHAPES, 0.3) == [0, 0, 21]


def test_erk_table_at_0_8_and_the_largest_remainder():
    """s = 0.8: zeros 6 + 14 + 38 = 58, kept 16 = 27 eps, eps = 16/27 (no layer dense). Pruned reals
    8 - 6 eps = 4.444, 18 - 9 eps = 12.667, 48 - 12 eps = 40.889 (reference 0.556, 0.70, 0.85); floors 56, the 2
    left go to c (.889) and b (.667): [4, 13, 41]."""
    assert counts(ERKDistribution(), JAX_SHAPES, 0.8) == [4, 13, 41]


def test_erk_power_scale_table():
    """power_scale 2: ratios^2 = .5625, .25, .0625 (x n: 4.5, 4.5, 3). s = 0.5: eps = 37 / 12, a's density > 1:
    dense; b, c: 18 - 4.5 eps + 48 - 3 eps = 37, eps = 29 / 7.5; b prunes 0.6 (reference 0.033), c 36.4 (0.758):
    floors 36, b gets the last one (.6 > .4): [0, 1, 36]."""
    assert counts(ERKDistribution(power_scale=2.0), JAX_SHAPES, 0.5) == [0, 1, 36]
    assert counts(ERKDistribution(power_scale=0.0), JAX_SHAPES, 0.5) == [4, 9, 24]  # power 0: uniform density


def test_er_uses_dims_0_and_1_of_pytorch_weights():
    """ER's ratio (n_out + n_in) / (n_out n_in). The reference's table (0.21, 0.47, 0.56) is for JAX kernels
    (..., in, out); the same layers in PyTorch's layout are a [4, 2], b [6, 3], c a Conv1d [6, 4, 2]: ratios 6/8,
    9/18, 10/24 (x n: 6, 9, 20). s = 0.5: kept 37 = 35 eps; pruned 8 - 6 eps = 1.657, 18 - 9 eps = 8.486,
    48 - 20 eps = 26.857: floors 35, the 2 left to c (.857) and a (.657): [2, 8, 27]."""
    torch_shapes = [(4, 2), (6, 3), (6, 4, 2)]
    assert counts(ERDistribution(), torch_shapes, 0.5) == [2, 8, 27]
    # a conv [out, in, kh, kw]: ER takes dims 0 and 1 (the TF/JAX layout's last two would be kh, kw here); ERK all
    assert ERDistribution().ratio((6, 4, 3, 3)) == pytest.approx(10 / 24)
    assert ERKDistribution().ratio((6, 4, 3, 3)) == pytest.approx(16 / 216)
    assert counts(ERDistribution(), [(6, 4, 3, 3), (6, 4)], 0.5) != counts(ERDistribution(), [(3, 3, 6, 4), (6, 4)],
                                                                          0.5)


def test_erk_holds_the_per_op_max_bound_and_frees_a_layer_again():
    """Layers a [8, 8], b [16, 16], c [100, 100] (ratios .25, .125, .02; x n: 16, 32, 200), s = 0.88,
    max_sparsity_ratio_per_op = 0.895 (hi: 57, 229, 8950 weights). Budget 56 + 225 + 8800 = 9081.
    Unbounded: a would be denser than 1 (dense), then c would prune 8987 > 8950: c is held at 8950. With c held,
    a + b = 131 = (64 - 16 eps) + (256 - 32 eps), eps = 3.9375: a prunes 1 (no longer dense), b 130.
    A fix-up loop that never releases a dense layer would leave a at 0 and b at 131."""
    pattern = Pattern("1x1", max_sparsity_ratio_per_op=0.895)
    got = counts(ERKDistribution(), [(8, 8), (16, 16), (100, 100)], 0.88, pattern)
    assert got == [1, 130, 8950]


@pytest.mark.parametrize("seed", range(6))
def test_erk_and_er_total_is_exact(seed):
    """Any shapes, target and bounds: the pruned total is the budget (sum of floor(s * n)), within every bound."""
    rng = random.Random(seed)
    shapes = [tuple(rng.randint(1, 40) for _ in range(rng.choice([2, 4]))) for _ in range(rng.randint(2, 7))]
    shapes = [s if len(s) == 2 else (s[0], s[1], rng.randint(1, 3), rng.randint(1, 3)) for s in shapes]
    pattern = Pattern("1x1", max_sparsity_ratio_per_op=rng.choice([1.0, 0.98, 0.9]),
                      min_sparsity_ratio_per_op=rng.choice([0.0, 0.1]))
    target = rng.choice([0.3, 0.5, 0.8, 0.87])
    for dist in (ERKDistribution(), ERDistribution()):
        got = counts(dist, shapes, target, pattern)
        sizes = [math.prod(s) for s in shapes]
        bounds = [pattern.block_bounds(n) for n in sizes]
        budget = sum(math.floor(round(target * n, 6)) for n in sizes)
        budget = min(max(budget, sum(lo for lo, _ in bounds)), sum(hi for _, hi in bounds))
        assert sum(got) == budget, (shapes, target, got)
        assert all(lo <= k <= hi for k, (lo, hi) in zip(got, bounds))


def test_erk_masks_through_the_pattern_are_exact_and_lowest():
    """The masks prune exactly the counts, the lowest scores of each layer."""
    g = torch.Generator().manual_seed(0)
    scores = {"a": torch.rand(2, 4, generator=g), "b": torch.rand(3, 6, generator=g),
              "c": torch.rand(2, 4, 6, generator=g)}
    masks = UNSTRUCTURED_NO_BOUND.masks(scores, 0.5, "erk")
    assert [int((~m).sum()) for m in masks.values()] == [0, 6, 31]
    for n, m in masks.items():
        if (~m).any():
            assert scores[n][~m].max() < scores[n][m].min()


def test_erk_with_blocks_counts_blocks():
    """4x1 blocks: ERK splits blocks (a [8, 2]: 4 blocks, b [16, 4]: 16) with the weights' ratios (10/16, 20/64).
    s = 0.5: budget 2 + 8 = 10 blocks; kept 10 = eps (2.5 + 5), eps = 4/3; a keeps 3.33 -> prunes 0.667,
    b prunes 16 - 6.667 = 9.333; floors 0 + 9, the last to a (.667 > .333): [1, 9]."""
    assert counts(ERKDistribution(), [(8, 2), (16, 4)], 0.5, Pattern("4x1", max_sparsity_ratio_per_op=1.0)) == [1, 9]


def test_distribution_parameters_are_checked():
    with pytest.raises(ConfigError, match=r"^distribution.power_scale=-1: a number >= 0"):
        build_distribution({"name": "erk", "power_scale": -1})
    with pytest.raises(ConfigError, match=r"^distribution.power_scale=1: a parameter of distribution er"):
        build_distribution({"name": "er", "power_scale": 1})
    assert build_distribution({"name": "erk", "power_scale": 0.5}).power_scale == 0.5


# --- per_row ------------------------------------------------------------------------------------------------
def test_per_row_prunes_the_same_fraction_of_every_row():
    s = torch.tensor([[5.0, 1.0, 3.0, 2.0, 4.0], [0.5, 0.1, 0.1, 0.9, 0.2]])
    masks = Pattern("1x1").masks({"l": s}, 0.4, "per_row")  # floor(0.4 * 5) = 2 per row
    assert torch.equal(masks["l"], torch.tensor([[True, False, True, False, True],
                                                 [True, False, False, True, True]]))  # row 2: the tie 0.1, 0.1 both go
    masks = Pattern("1x1").masks({"l": s}, 0.2, "per_row")  # 1 per row: of the tied 0.1s the earlier goes
    assert torch.equal(~masks["l"][1], torch.tensor([False, True, False, False, False]))
    glob = Pattern("1x1").masks({"l": s}, 0.4)  # global: row 2 loses 4 (all its scores are lower)
    assert [int((~m).sum()) for m in glob["l"]] == [0, 4]


def test_per_row_with_blocks_and_nm():
    s = torch.arange(32, dtype=torch.float32).reshape(8, 4).flip(1)  # every row descending
    m = Pattern("4x1").masks({"l": s}, 0.5, "per_row")  # block rows: 2 of 4 blocks (the last two columns)
    assert torch.equal(m["l"], torch.tensor([True, True, False, False]).expand(8, 4))
    w = torch.tensor([[4.0, 3.0, 2.0, 1.0, 1.0, 2.0, 3.0, 4.0], [9.0, 1.0, 8.0, 2.0, 7.0, 3.0, 6.0, 4.0]])
    nm = Pattern("2:4").masks({"l": w}, 0.5, "per_row")  # every group 2:4: the two highest of each four stay
    assert torch.equal(nm["l"], torch.tensor([[True, True, False, False, False, False, True, True],
                                              [True, False, True, False, True, False, True, False]]))
    nm = Pattern("2:4").masks({"l": w}, 0.25, "per_row")  # half the groups of a row: the one removing least
    assert torch.equal(nm["l"][0], torch.tensor([True, True, False, False, True, True, True, True]))


def test_per_row_refuses_channel_in_one_line():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ConfigError, match=r"^distribution='per_row': a pattern with several blocks per output row"):
        Pruner(net, "magnitude", "channel", Schedule(0.5, 1, 1), distribution="per_row", head="2")


# --- the per-layer targets, before any score: the layer table, and what the masks then do ------------------
def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


@pytest.mark.parametrize("dist", ["uniform", "erk", "er", "per_row"])
def test_layer_targets_are_what_the_masks_prune(dist):
    model = mlp()
    pruner = Pruner(model, "magnitude", "1x1", Schedule(0.9, 1, 1), distribution=dist, head="4")
    targets = pruner.layer_targets()
    table = pruner.describe()
    for name, t in targets.items():
        line = next(ln for ln in table.splitlines() if ln.split()[0] == name)
        assert f"{t:.4f}" in line
    pruner.on_step_begin(1)
    assert pruner.mask_sparsity() == pytest.approx(targets, abs=1e-12)


def test_erk_targets_of_the_default_mlp_by_hand():
    """fc1 [256, 64], fc2 [128, 256]: ratios 320/16384, 384/32768; budget 14745 + 29491 = 44236, kept 4916 =
    704 eps; fc1 prunes 16384 - 320 eps = 14149.45, fc2 32768 - 384 eps = 30086.55: floors 44235, the last to fc2
    (.55 > .45): 14149 and 30087."""
    pruner = Pruner(mlp(), "magnitude", "1x1", Schedule(0.9, 1, 1), distribution="erk", head="4")
    assert pruner.layer_targets() == {"0": 14149 / 16384, "2": 30087 / 32768}


def test_global_has_no_layer_targets():
    pruner = Pruner(mlp(), "magnitude", "1x1", Schedule(0.9, 1, 1), head="4")
    assert pruner.layer_targets() is None
    rows = [ln for ln in pruner.describe().splitlines()[1:] if ln.endswith("pruned")]
    assert len(rows) == 2 and all(" global  pruned" in ln for ln in rows)


def test_erk_conv_uses_all_dims():
    """A conv [8, 4, 3, 3] (ratio 18/288) next to a Linear [16, 8] (24/128): the masks follow ERK over all dims."""
    convnet = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Flatten(), nn.Linear(8, 16), nn.Linear(16, 2))
    pruner = Pruner(convnet, "magnitude", "1x1", Schedule(0.5, 1, 1), distribution="erk", head="3")
    # budget 144 + 64 = 208, kept 208 = eps (18 + 24), eps = 4.952; conv prunes 288 - 18 eps = 198.86, linear
    # 128 - 24 eps = 9.14: floors 207, the last to the conv (.86): 199 and 9
    assert pruner.layer_targets() == {"0": 199 / 288, "2": 9 / 128}
