"""Criteria scored during training: taylor, movement and lamp against their papers' definitions and hand-computed
values (dyadic numbers: every product and sum below is exact in float32)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from prunelab.criteria import LampCriterion, MovementCriterion, TaylorCriterion, get_criterion
from prunelab.errors import ConfigError
from prunelab.pruner import Pruner
from prunelab.schedule import Schedule
from prunelab.sparsity.patterns import Pattern


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def param(w):
    return t(w).requires_grad_(True)


def step_with(crit, weights, grads):
    """One on_before_optimizer_step with the given W and g (set in place), then the scores as the pruner reads
    them (``prepare_scores``, as at a pruning or logging step)."""
    for p, w, g in zip(crit.weights, weights, grads):
        with torch.no_grad():
            p.copy_(t(w))
        p.grad = t(g)
    crit.on_before_optimizer_step()
    crit.prepare_scores()


# --- taylor --------------------------------------------------------------------------------------------------
def test_taylor_elementwise_squares_per_batch_then_averages():
    """1x1: each weight is its unit, score = mean over batches of (w g)^2. Batches W = [1, 2]: g = [1, -1] then
    [-1, 0.5], so w g = [1, -2] then [-1, 1]: mean of squares [1, 2.5]. Average-then-square gives [0, 0.25].
    A third batch g = [2, 1] (w g = [2, 2]): means [(1 + 1 + 4) / 3, (4 + 1 + 4) / 3] = [2, 3]."""
    crit = get_criterion("taylor", {"l": param([[1.0, 2.0]])})
    crit.use_pattern(Pattern("1x1"))
    step_with(crit, [[[1.0, 2.0]]], [[[1.0, -1.0]]])
    step_with(crit, [[[1.0, 2.0]]], [[[-1.0, 0.5]]])
    assert torch.equal(crit.scores["l"], t([[1.0, 2.5]]))
    step_with(crit, [[[1.0, 2.0]]], [[[2.0, 1.0]]])  # (read after every batch, as a logging step would)
    assert torch.equal(crit.scores["l"], t([[2.0, 3.0]]))


def test_taylor_unit_is_the_output_channel_for_the_channel_pattern():
    """channel: a unit's score is (sum over its weights of w g)^2 per batch, averaged. W = [[1, -2], [0.5, 4]]:
    batch 1 g = [[1, 1], [2, 0.25]]: unit sums -1 and 2 -> squares 1, 4; batch 2 g = [[-1, 1], [0, -0.5]]: sums
    -3 and -2 -> 9, 4. Means 5 and 4, on every weight of the unit. (The reference's method 0 sums the squares,
    (1 + 4) and (1 + 1) in batch 1: it would give other numbers.)"""
    w = [[1.0, -2.0], [0.5, 4.0]]
    crit = get_criterion("taylor", {"l": param(w)})
    crit.use_pattern(Pattern("channel"))
    step_with(crit, [w], [[[1.0, 1.0], [2.0, 0.25]]])
    step_with(crit, [w], [[[-1.0, 1.0], [0.0, -0.5]]])
    assert torch.equal(crit.scores["l"], t([[5.0, 5.0], [4.0, 4.0]]))
    # averaged first and squared after, the units would score ((-1 - 3) / 2)^2 = 4 and ((2 - 2) / 2)^2 = 0
    assert crit.scores["l"][1, 0] != 0


def test_taylor_blocks_and_conv_channels():
    """4x1 blocks: a unit is 4 rows at one input; Conv: a unit (output channel) spans in x kh x kw."""
    w = torch.arange(8, dtype=torch.float32).reshape(4, 2) - 3.0
    g = torch.ones(4, 2)
    crit = get_criterion("taylor", {"l": w.clone().requires_grad_(True)})
    crit.use_pattern(Pattern("4x1"))
    step_with(crit, [w.tolist()], [g.tolist()])
    col_sums = (w * g).sum(0)  # [-3 -1 1 3, -2 0 2 4] -> 0 and 4
    assert torch.equal(crit.scores["l"], (col_sums**2).expand(4, 2))
    cw = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2) / 8 - 1
    cg = torch.full_like(cw, 0.5)
    crit = get_criterion("taylor", {"c": cw.clone().requires_grad_(True)})
    crit.use_pattern(Pattern("channel"))
    step_with(crit, [cw.tolist()], [cg.tolist()])
    want = (cw * cg).sum((1, 2, 3)) ** 2
    assert torch.equal(crit.scores["c"], want[:, None, None, None].expand_as(cw))


def test_taylor_average_restarts_after_each_pruning_step():
    """Through the pruner: the scores a pruning step ranks are the mean of (w g)^2 over the batches since the last
    pruning step, computed by hand from the W and g of every step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    pruner = Pruner(model, "taylor", "1x1", Schedule(0.5, start_step=3, end_step=6, pruning_frequency=3),
                    head="2", distribution="uniform")
    pruner.request_scores(5)  # a score-logging step mid-window (step 5): it reads the mean so far too
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(5, 6, generator=g), torch.randint(0, 3, (5,), generator=g)) for _ in range(7)]
    window: list[torch.Tensor] = []
    used = {}
    pruner.on_train_begin()
    for step, (x, y) in enumerate(data):
        pruner.on_step_begin(step)
        if step == 5:
            torch.testing.assert_close(pruner.criterion.scores["0"], torch.stack(window).square().mean(0),
                                       rtol=1e-6, atol=1e-9)
        if step in (3, 6):
            used[step] = pruner.criterion.scores["0"].clone()
            expected = torch.stack(window).square().mean(0)
            torch.testing.assert_close(used[step], expected, rtol=1e-6, atol=1e-9)
            window = []
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        window.append((model[0].weight * model[0].weight.grad).detach().clone())
        pruner.on_before_optimizer_step()
        opt.step()
        pruner.on_after_optimizer_step()
    assert pruner.criterion.count == 1  # reset by step 6, then step 6 its own (scores are still logged)


def test_taylor_momentum_across_pruning_steps():
    """momentum m: from the second pruning step on, the score is m * previous + (1 - m) * mean. W = [2]: window 1
    g = 1, 3 (w g = 2, 6: mean of squares 20); window 2 g = 0.5 (w g = 1: 1); m = 0.75: 0.75 * 20 + 0.25 * 1."""
    crit = get_criterion({"criterion_type": "taylor", "momentum": 0.75}, {"l": param([[2.0]])})
    step_with(crit, [[[2.0]]], [[[1.0]]])
    step_with(crit, [[[2.0]]], [[[3.0]]])
    assert float(crit.scores["l"]) == 20.0
    crit.on_pruning_step()
    step_with(crit, [[[2.0]]], [[[0.5]]])
    assert float(crit.scores["l"]) == 0.75 * 20 + 0.25 * 1
    state = copy.deepcopy(crit.state_dict())
    assert state["count"] == 1 and float(state["previous"]["l"]) == 20.0
    other = get_criterion({"criterion_type": "taylor", "momentum": 0.75}, {"l": param([[2.0]])})
    other.load_state_dict(state)
    step_with(other, [[[2.0]]], [[[1.5]]])  # w g = 3: mean of the window (1 + 9) / 2 = 5
    assert float(other.scores["l"]) == 0.75 * 20 + 0.25 * 5
    with pytest.raises(ConfigError, match=r"^criterion.momentum=1.0: a number in \[0, 1\)"):
        get_criterion({"criterion_type": "taylor", "momentum": 1.0}, {"l": param([[2.0]])})


def test_taylor_channel_pruning_removes_the_lowest_units():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    pruner = Pruner(model, "taylor", "channel", Schedule(0.5, start_step=2, end_step=2), head="2")
    assert pruner.criterion.pattern is pruner.pattern  # the pruner told the criterion its pattern
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(2)
    pruner.on_train_begin()
    for step in range(3):
        x, y = torch.randn(5, 6, generator=g), torch.randint(0, 3, (5,), generator=g)
        pruner.on_step_begin(step)
        if step == 2:
            s = pruner.criterion.scores["0"]
            assert torch.all(s == s[:, :1])  # one score per output channel
            kept = pruner.masks["0"].all(1)
            assert int((~kept).sum()) == 4 and s[~kept, 0].max() <= s[kept, 0].min()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.on_before_optimizer_step()
        opt.step()
        pruner.on_after_optimizer_step()


def test_taylor_and_movement_declarations():
    for cls in (TaylorCriterion, MovementCriterion):
        assert cls.needs_gradients and cls.stateful and cls.score_hook.value == "on_before_optimizer_step"
    with pytest.raises(ConfigError, match="snip_init"):  # gradients first: not at initialization
        Pruner(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)), "taylor", "1x1", Schedule(0.5, 0, 0), head="1")


# --- movement ------------------------------------------------------------------------------------------------
def test_movement_sign_weights_moving_toward_zero_lose_score():
    """S <- S - W g. W = [1, -1, 1, -1], g = [0.5, -0.5, -0.5, 0.5]: under W <- W - lr g the first two move toward
    0, the last two away: S = [-0.5, -0.5, 0.5, 0.5]. A second step adds -W g again."""
    crit = get_criterion("movement", {"l": param([[1.0, -1.0, 1.0, -1.0]])})
    step_with(crit, [[[1.0, -1.0, 1.0, -1.0]]], [[[0.5, -0.5, -0.5, 0.5]]])
    assert torch.equal(crit.scores["l"], t([[-0.5, -0.5, 0.5, 0.5]]))
    step_with(crit, [[[0.5, -2.0, 1.0, -1.0]]], [[[1.0, 0.25, 0.0, -2.0]]])
    assert torch.equal(crit.scores["l"], t([[-1.0, 0.0, 0.5, -1.5]]))


def test_movement_under_plain_sgd_is_the_change_of_w_squared():
    """With plain SGD (W_{t+1} = W_t - lr g_t), -W_t g_t = (W_{t+1}^2 - W_t^2 - (W_{t+1} - W_t)^2) / (2 lr)
    exactly, so S_T = (W_T^2 - W_0^2 - sum_t (dW_t)^2) / (2 lr): weights that shrank scored lower."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2))
    lr = 0.05
    pruner = Pruner(model, "movement", "1x1", Schedule(0.5, start_step=8, end_step=8), head="2")
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    w0 = model[0].weight.detach().double().clone()
    sq_steps = torch.zeros_like(w0)
    g = torch.Generator().manual_seed(5)
    pruner.on_train_begin()
    for step in range(8):
        x, y = torch.randn(4, 5, generator=g), torch.randint(0, 2, (4,), generator=g)
        pruner.on_step_begin(step)
        before = model[0].weight.detach().double().clone()
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.on_before_optimizer_step()
        opt.step()
        pruner.on_after_optimizer_step()
        sq_steps += (model[0].weight.detach().double() - before) ** 2
    wt = model[0].weight.detach().double()
    want = (wt**2 - w0**2 - sq_steps) / (2 * lr)
    torch.testing.assert_close(pruner.criterion.scores["0"].double(), want, rtol=1e-4, atol=1e-6)


# --- lamp ----------------------------------------------------------------------------------------------------
def test_lamp_scores_of_a_small_layer_by_hand():
    """W = [3, -1, 2, 0.5]: W^2 = 9, 1, 4, 0.25; ascending 0.25, 1, 4, 9 with tail sums 14.25, 14, 13, 9: scores
    0.25 / 14.25, 1 / 14, 4 / 13, 9 / 9, in the weights' positions."""
    crit = get_criterion("lamp", {"l": param([[3.0, -1.0], [2.0, 0.5]])})
    crit.on_step_begin()
    want = torch.tensor([[1.0, 1 / 14], [4 / 13, 0.25 / 14.25]])
    torch.testing.assert_close(crit.scores["l"], want, rtol=1e-6, atol=0)
    assert float(crit.scores["l"].max()) == 1.0  # the largest weight of every layer scores exactly 1


def test_lamp_ties_and_zeros():
    """Equal weights: the earlier one is lower (its tail includes the later one). W = [1, -1, 2]: 1/6, 1/5, 1.
    Pruned (zero) weights score 0; an all-zero layer scores 0 (no NaN)."""
    crit = get_criterion("lamp", {"a": param([[1.0, -1.0, 2.0]]), "b": param([[0.0, 0.0]]),
                                  "c": param([[0.0, 2.0]])})
    crit.on_step_begin()
    torch.testing.assert_close(crit.scores["a"], t([[1 / 6, 1 / 5, 1.0]]), rtol=1e-6, atol=0)
    assert torch.equal(crit.scores["b"], t([[0.0, 0.0]]))
    assert torch.equal(crit.scores["c"], t([[0.0, 1.0]]))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("zeros", [0.0, 0.15, 0.25, 0.6])
def test_lamp_numpy_and_torch_paths_agree(seed, zeros):
    """The CPU path (one numpy sort of packed keys: of all weights while nearly all are kept, of the nonzero ones
    from 20% zeros on) and the torch path (a stable torch.sort, used on GPUs) give the same scores, ties and zeros
    included, and the definition's."""
    from prunelab.criteria.lamp import _lamp_np, _lamp_torch

    g = torch.Generator().manual_seed(seed)
    w = torch.randint(1, 7, (40, 50), generator=g).float() * torch.rand(1, 50, generator=g)  # many ties
    w = w * torch.where(torch.rand(w.shape, generator=g) < 0.5, -1.0, 1.0) * (torch.rand(w.shape, generator=g) >= zeros)
    got = torch.from_numpy(_lamp_np(w.reshape(-1).numpy()))
    assert torch.equal(got, _lamp_torch(w.reshape(-1).square()))
    torch.testing.assert_close(got.reshape(w.shape), _lamp_by_definition(w), rtol=1e-6, atol=0)


def test_lamp_of_tiny_negative_zero_and_non_finite_weights():
    """Squares that underflow to 0 score 0 (no 0/0 when a whole layer squares to 0); subnormal squares rank by value;
    -0.0 (what masking a negative weight leaves) is a zero; an inf or NaN weight gives the GPU path's scores."""
    from prunelab.criteria.lamp import _lamp_np, _lamp_torch

    underflow = torch.tensor([1e-30, -1e-30, -0.0, 0.0] * 30)  # 1e-60 is 0 in float32
    assert torch.equal(torch.from_numpy(_lamp_np(underflow.numpy())), torch.zeros(120))
    assert _lamp_np(np.zeros(0, np.float32)).size == 0 and not _lamp_np(np.zeros(7, np.float32)).any()
    mixed = torch.tensor([1e-30, 2.0, -0.0, 1e-20, -3e-20, 0.5, -2.0, -0.0, 1e-21] * 10)  # 1e-40: subnormal squares
    got = torch.from_numpy(_lamp_np(mixed.numpy()))
    torch.testing.assert_close(got, _lamp_by_definition(mixed), rtol=1e-6, atol=0)
    assert torch.equal(got, _lamp_torch(mixed.square()))
    assert bool((got[[2, 7]] == 0).all()) and float(got[3]) > 0  # -0.0 scores 0, a subnormal square does not
    for bad in (float("inf"), float("nan")):
        w = torch.tensor([1.0, bad, -2.0, 0.0, 3.0] * 20)
        torch.testing.assert_close(torch.from_numpy(_lamp_np(w.numpy())), _lamp_torch(w.square()), equal_nan=True,
                                   rtol=0, atol=0)


def _lamp_by_definition(w: torch.Tensor) -> torch.Tensor:
    """W_i^2 over the sum of W_j^2 of every j ranked at or after i (larger, or equal and at a later position)."""
    sq = w.reshape(-1).double().square()
    pos = torch.arange(sq.numel())
    after = (sq[None, :] > sq[:, None]) | ((sq[None, :] == sq[:, None]) & (pos[None, :] >= pos[:, None]))
    tail = (after * sq[None, :]).sum(1)
    return torch.where(sq > 0, sq / tail, 0.0).float().reshape(w.shape)


def test_lamp_scratch_buffers_carry_nothing_from_one_layer_to_the_next():
    """The scratch buffers a LAMP criterion keeps between layers and steps (grown to the largest layer) leave no
    trace: layers of every size and sparsity, scored in turn and again after pruning, match the definition."""
    from prunelab.criteria.lamp import LampWorkspace, lamp_scores

    g = torch.Generator().manual_seed(3)
    ws = LampWorkspace()
    layers = [torch.randint(-5, 6, shape, generator=g).float() for shape in ((12, 15), (3, 4), (20, 9), (1, 7))]
    for w in [*layers, *(w * (torch.rand(w.shape, generator=g) > 0.6) for w in layers)]:  # then pruned ones
        out = torch.full(w.shape, 7.0)
        assert lamp_scores(w, ws, out=out) is out
        torch.testing.assert_close(out, _lamp_by_definition(w), rtol=1e-6, atol=0)
        torch.testing.assert_close(lamp_scores(w, ws), out, rtol=0, atol=0)


def test_lamp_global_threshold_gives_layer_adaptive_sparsity():
    """Layer a has large weights, b small ones: global magnitude empties b; global LAMP keeps every layer's largest
    weight (score 1) and prunes by the rescaled scores. a = [4, 5, 6, 7], b = [0.1, 0.2, 0.3, 0.4]; 6 of 8 go.
    LAMP: a -> 16/126, 25/110, 36/85, 1; b -> 0.01/0.3, 0.04/0.29, 0.09/0.25, 1: the six lowest are a's three
    smallest and b's three smallest."""
    a, b = [[4.0, 5.0, 6.0, 7.0]], [[0.1, 0.2, 0.3, 0.4]]
    whole = {"type": "1x1", "max_sparsity_ratio_per_op": 1.0}  # no per-op bound: a layer may be emptied
    mag = Pruner({"a": param(a), "b": param(b)}, "magnitude", whole, Schedule(0.75, 0, 0))
    mag.on_step_begin(0)
    assert int(mag.masks["b"].sum()) == 0  # magnitude: b emptied
    lamp = Pruner({"a": param(a), "b": param(b)}, "lamp", whole, Schedule(0.75, 0, 0))
    lamp.on_step_begin(0)
    assert lamp.masks["a"].tolist() == [[False, False, False, True]]
    assert lamp.masks["b"].tolist() == [[False, False, False, True]]


def test_lamp_is_refused_with_a_per_layer_distribution():
    assert LampCriterion.distributions == ("global",)
    for dist in ("uniform", "erk", "per_row"):
        with pytest.raises(ConfigError, match=rf"^distribution='{dist}': global for criterion lamp \(LAMP rescales"):
            Pruner({"a": param([[1.0, 2.0]])}, "lamp", "1x1", Schedule(0.5, 1, 1), distribution=dist)


def test_lamp_scores_only_at_scoring_steps():
    """No state: computed at the steps that use scores, from the weights as they stand."""
    crit = get_criterion("lamp", {"l": param([[1.0, 2.0]])})
    assert crit.state_dict() == {} and not LampCriterion.stateful
    assert math.isclose(float(get_criterion("lamp", {"l": param([[2.0]])}).scores["l"]), 0.0)
