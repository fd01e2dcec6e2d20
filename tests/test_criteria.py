"""Criteria: scores against hand-computed values, the registry, configs, state."""
from __future__ import annotations

import copy
import io
from dataclasses import dataclass

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from prunelab.criteria import (
    CRITERIA,
    GradientCriterion,
    MagnitudeCriterion,
    PruningCriterion,
    RandomCriterion,
    SnipCriterion,
    SnipMomentumCriterion,
    get_criterion,
    register_criterion,
)
from prunelab.errors import ConfigError

# Dyadic numbers only: every product/sum below is exact in float32.
W = [[1.0, -2.0], [0.5, -0.25]]
G = [[0.5, 0.25], [-4.0, 2.0]]
ABS_W = [[1.0, 2.0], [0.5, 0.25]]
ABS_G = [[0.5, 0.25], [4.0, 2.0]]
ABS_WG = [[0.5, 0.5], [2.0, 0.5]]


def t(x):
    return torch.tensor(x, dtype=torch.float32)


def layer_with(w, g=None) -> nn.Linear:
    w = t(w)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    if g is not None:
        lin.weight.grad = t(g)
    return lin


def raw_with(w, g=None) -> torch.Tensor:
    p = t(w).requires_grad_(True)
    if g is not None:
        p.grad = t(g)
    return p


@pytest.fixture(params=["layer", "tensor"])
def make(request):
    """Modules given as layers with .weight, or as the weight tensors themselves."""
    return layer_with if request.param == "layer" else raw_with


def weight(obj):
    return obj if isinstance(obj, torch.Tensor) else obj.weight


# --- each criterion's scores, in its hook ---
def test_magnitude_scores_abs_w_at_step_begin(make):
    mod = make(W, G)
    crit = get_criterion({"criterion_type": "magnitude"}, {"l": mod})
    assert isinstance(crit, MagnitudeCriterion)
    crit.on_before_optimizer_step()
    crit.on_after_optimizer_step()
    assert torch.equal(crit.scores["l"], torch.zeros(2, 2))  # not computed in the other hooks
    crit.on_step_begin()
    assert torch.equal(crit.scores["l"], t(ABS_W))
    assert crit.scores["l"].dtype == torch.float32
    # the score follows the weight at the next step_begin
    with torch.no_grad():
        weight(mod).mul_(-2.0)
    crit.on_step_begin()
    assert torch.equal(crit.scores["l"], t([[2.0, 4.0], [1.0, 0.5]]))


def test_gradient_scores_abs_grad_before_optimizer_step(make):
    mod = make(W, G)
    crit = get_criterion({"criterion_type": "gradient"}, {"l": mod})
    assert isinstance(crit, GradientCriterion)
    crit.on_step_begin()
    assert torch.equal(crit.scores["l"], torch.zeros(2, 2))
    crit.on_before_optimizer_step()
    assert torch.equal(crit.scores["l"], t(ABS_G))


def test_snip_scores_abs_w_times_grad(make):
    mod = make(W, G)
    crit = get_criterion({"criterion_type": "snip"}, {"l": mod})
    assert isinstance(crit, SnipCriterion)
    crit.on_step_begin()
    assert torch.equal(crit.scores["l"], torch.zeros(2, 2))
    crit.on_before_optimizer_step()
    assert torch.equal(crit.scores["l"], t(ABS_WG))
    # a new step overwrites (no history): W unchanged, grad doubled -> scores doubled
    weight(mod).grad = t(G) * 2
    crit.on_before_optimizer_step()
    assert torch.equal(crit.scores["l"], t(ABS_WG) * 2)


# snip_momentum over three steps; W fixed, grads g1, g2, g3:
SM_W = [[2.0, -1.0, 0.5, 4.0]]
SM_G = [
    [[1.0, 1.0, 1.0, 1.0]],  # |W*g1| = [2, 1, 0.5, 4]
    [[0.5, -2.0, 0.0, 1.0]],  # |W*g2| = [1, 2, 0, 4]
    [[-1.0, 0.0, 4.0, 0.25]],  # |W*g3| = [2, 0, 2, 1]
]
# alpha=0.9, beta=1: S1 = [2, 1, .5, 4]; S2 = .9*S1 + c2 = [2.8, 2.9, .45, 7.6]; S3 = .9*S2 + c3:
SM_DEFAULT = [[[2.0, 1.0, 0.5, 4.0]], [[2.8, 2.9, 0.45, 7.6]], [[4.52, 2.61, 2.405, 7.84]]]
# alpha=0.5, beta=2: S1 = [4, 2, 1, 8]; S2 = [2+2, 1+4, .5+0, 4+8]; S3 = [2+4, 2.5+0, .25+4, 6+2]:
SM_HALF_TWO = [[[4.0, 2.0, 1.0, 8.0]], [[4.0, 5.0, 0.5, 12.0]], [[6.0, 2.5, 4.25, 8.0]]]


@pytest.mark.parametrize(
    "cfg, expected",
    [({"criterion_type": "snip_momentum"}, SM_DEFAULT),
     ({"criterion_type": "snip_momentum", "alpha": 0.5, "beta": 2.0}, SM_HALF_TWO)],
)
def test_snip_momentum_recurrence(make, cfg, expected):
    mod = make(SM_W)
    crit = get_criterion(cfg, {"l": mod})
    assert isinstance(crit, SnipMomentumCriterion)
    assert torch.equal(crit.scores["l"], torch.zeros(1, 4))  # S starts at 0
    for g, want in zip(SM_G, expected):
        weight(mod).grad = t(g)
        crit.on_step_begin()
        crit.on_before_optimizer_step()
        crit.on_after_optimizer_step()
        torch.testing.assert_close(crit.scores["l"], t(want), rtol=1e-6, atol=1e-7)


def test_snip_momentum_defaults():
    crit = get_criterion({"criterion_type": "snip_momentum"}, {"l": raw_with(SM_W)})
    assert (crit.alpha, crit.beta) == (0.9, 1.0)


def test_snip_momentum_rejects_negative_weights():
    with pytest.raises(ConfigError) as e:
        get_criterion({"criterion_type": "snip_momentum", "alpha": -0.5}, {"l": raw_with(SM_W)})
    assert "criterion.alpha" in str(e.value) and "\n" not in str(e.value)


def test_several_layers_scored_together():
    a, b = layer_with(W, G), raw_with(SM_W, SM_G[0])
    crit = get_criterion({"criterion_type": "snip"}, {"a": a, "b": b})
    crit.on_before_optimizer_step()
    assert list(crit.scores) == ["a", "b"]
    assert torch.equal(crit.scores["a"], t(ABS_WG))
    assert torch.equal(crit.scores["b"], t([[2.0, 1.0, 0.5, 4.0]]))


# --- random ---
def test_random_reproducible_and_seeded():
    mods = {"a": raw_with([[0.0] * 6] * 5), "b": layer_with([[1.0] * 3] * 4)}
    r1 = get_criterion({"criterion_type": "random", "seed": 3}, mods)
    r2 = get_criterion({"criterion_type": "random", "seed": 3}, mods)
    r3 = get_criterion({"criterion_type": "random", "seed": 4}, mods)
    assert isinstance(r1, RandomCriterion)
    for n in mods:
        assert r1.scores[n].shape == weight(mods[n]).shape
        assert torch.equal(r1.scores[n], r2.scores[n])
        assert not torch.equal(r1.scores[n], r3.scores[n])
        assert bool(((r1.scores[n] >= 0) & (r1.scores[n] < 1)).all())
        # the weights' values play no part, and the hooks do not redraw
        before = r1.scores[n].clone()
        r1.on_step_begin()
        r1.on_before_optimizer_step()
        r1.on_after_optimizer_step()
        assert torch.equal(r1.scores[n], before)
    # the default seed is fixed too
    d1 = get_criterion({"criterion_type": "random"}, mods)
    d2 = get_criterion({"criterion_type": "random"}, mods)
    assert torch.equal(d1.scores["a"], d2.scores["a"])


def test_random_scores_are_not_the_models_initial_weights():
    """The model is initialised from ``torch.manual_seed(seed)`` and the run's seed is random's seed: a generator
    seeded with that same number draws the same uniforms that ``kaiming_uniform`` turned into the first layer's
    weights (W = b (2u - 1)), so random pruning kept exactly that layer's most positive initial weights. Random
    scores must be independent of the weights: their correlation with W is ~0 (sd 1/sqrt(n) ~ 0.002 here) and the
    kept set holds both signs. ``stream: model_init`` keeps the old draw (to reproduce old runs): correlation 1."""
    from prunelab.models import build as build_model

    for seed in (0, 3):
        torch.manual_seed(seed)  # as the app does before building the model
        net = build_model({"name": "mlp", "hidden_sizes": [300, 100], "input_shape": [1, 28, 28],
                           "num_classes": 10, "head": "head"})
        first = net.fc1.weight.detach().flatten()
        for stream, want in (("independent", 0.0), ("model_init", 1.0)):
            crit = get_criterion({"criterion_type": "random", "seed": seed, "stream": stream}, {"fc1": net.fc1})
            scores = crit.scores["fc1"].flatten()
            corr = float(torch.corrcoef(torch.stack([scores, first]))[0, 1])
            assert corr == pytest.approx(want, abs=0.01), (seed, stream)
            kept = first[scores >= scores.quantile(0.8)]  # the 20% a 0.8 target keeps
            assert (float((kept > 0).float().mean()) == pytest.approx(0.5, abs=0.01)) == (stream == "independent")
    with pytest.raises(ConfigError, match="criterion.stream='init': independent or model_init"):
        get_criterion({"criterion_type": "random", "stream": "init"}, {"fc1": net.fc1})


# --- get_criterion: config forms ---
@dataclass
class SnipMomentumConfig:
    criterion_type: str = "snip_momentum"
    alpha: float = 0.5
    beta: float = 2.0


@pytest.mark.parametrize(
    "cfg",
    [
        {"criterion_type": "snip_momentum", "alpha": 0.5, "beta": 2.0},
        OmegaConf.create({"criterion_type": "snip_momentum", "alpha": 0.5, "beta": 2.0}),
        SnipMomentumConfig(),
    ],
    ids=["dict", "DictConfig", "dataclass"],
)
def test_get_criterion_config_forms(cfg):
    mod = raw_with(SM_W, SM_G[0])
    crit = get_criterion(cfg, {"l": mod})
    assert type(crit) is SnipMomentumCriterion
    assert (crit.alpha, crit.beta) == (0.5, 2.0)
    crit.on_before_optimizer_step()
    assert torch.equal(crit.scores["l"], t(SM_HALF_TWO[0]))


@pytest.mark.parametrize("name", ["magnitude", "gradient", "snip", "snip_momentum", "random"])
def test_all_builtins_registered(name):
    assert name in CRITERIA
    crit = get_criterion(OmegaConf.create({"criterion_type": name}), {"l": raw_with(W)})
    assert crit.name == name
    assert crit.scores["l"].shape == (2, 2)


def test_unknown_name_lists_registered():
    with pytest.raises(ConfigError) as e:
        get_criterion({"criterion_type": "taylor_xyz"}, {"l": raw_with(W)})
    msg = str(e.value)
    assert "\n" not in msg
    assert "criterion.criterion_type" in msg and "taylor_xyz" in msg
    for name in ("magnitude", "gradient", "snip", "snip_momentum", "random"):
        assert name in msg


def test_missing_criterion_type_is_an_error():
    with pytest.raises(ConfigError) as e:
        get_criterion({"alpha": 0.9}, {"l": raw_with(W)})
    assert "criterion.criterion_type" in str(e.value)


def test_register_twice_is_an_error():
    with pytest.raises(ValueError, match="magnitude"):

        @register_criterion("magnitude")
        class Again(PruningCriterion):
            pass

    assert CRITERIA.get("magnitude") is MagnitudeCriterion


def test_register_new_criterion_then_twice():
    name = "test_only_half_magnitude"
    try:

        @register_criterion(name)
        class Half(PruningCriterion):
            @torch.no_grad()
            def on_step_begin(self):
                for s, w in zip(self._score_list, self.weights):
                    s.copy_(w.abs() / 2)

        crit = get_criterion({"criterion_type": name}, {"l": raw_with(W)})
        assert type(crit) is Half and crit.name == name
        crit.on_step_begin()
        assert torch.equal(crit.scores["l"], t(ABS_W) / 2)
        with pytest.raises(ValueError):
            register_criterion(name)(type("Other", (PruningCriterion,), {}))
        assert CRITERIA.get(name) is Half
    finally:
        CRITERIA._items.pop(name, None)


def test_module_without_weight_is_an_error():
    with pytest.raises(ConfigError) as e:
        get_criterion({"criterion_type": "magnitude"}, {"act": nn.ReLU()})
    assert "act" in str(e.value)


# --- step 0: no gradient yet ---
@pytest.mark.parametrize("name", ["gradient", "snip", "snip_momentum"])
def test_gradient_criteria_without_gradient(name, make):
    no_grad, with_grad = make(W), make(W, G)
    crit = get_criterion({"criterion_type": name}, {"a": no_grad, "b": with_grad})
    crit.on_step_begin()
    crit.on_before_optimizer_step()  # must not crash
    crit.on_after_optimizer_step()
    assert torch.equal(crit.scores["a"], torch.zeros(2, 2))
    expected = ABS_G if name == "gradient" else ABS_WG
    assert torch.equal(crit.scores["b"], t(expected))
    assert crit.needs_gradients


def test_needs_gradients_flags():
    m = {"l": raw_with(W)}
    assert not get_criterion("magnitude", m).needs_gradients
    assert not get_criterion("random", m).needs_gradients
    assert get_criterion("snip_momentum", m).stateful
    assert not get_criterion("snip", m).stateful


# --- state ---
@pytest.mark.parametrize("via", ["deepcopy", "bytesio"])
def test_snip_momentum_state_round_trip(via):
    cfg = {"criterion_type": "snip_momentum"}
    w1 = raw_with(SM_W)
    c1 = get_criterion(cfg, {"l": w1})
    for g in SM_G[:2]:
        w1.grad = t(g)
        c1.on_before_optimizer_step()
    state = raw = c1.state_dict()
    if via == "deepcopy":
        state = copy.deepcopy(state)
    else:
        buf = io.BytesIO()
        torch.save(state, buf)
        buf.seek(0)
        state = torch.load(buf, weights_only=True)
    w2 = raw_with(SM_W)
    c2 = get_criterion(cfg, {"l": w2})
    c2.load_state_dict(state)
    assert torch.equal(c2.scores["l"], c1.scores["l"])
    torch.testing.assert_close(c2.scores["l"], t(SM_DEFAULT[1]), rtol=1e-6, atol=1e-7)
    w1.grad = t(SM_G[2])
    w2.grad = t(SM_G[2])
    c1.on_before_optimizer_step()
    c2.on_before_optimizer_step()
    assert torch.equal(c1.scores["l"], c2.scores["l"])
    torch.testing.assert_close(c2.scores["l"], t(SM_DEFAULT[2]), rtol=1e-6, atol=1e-7)
    # and the state dict taken earlier is not aliased to the live scores
    torch.testing.assert_close(raw["scores"]["l"], t(SM_DEFAULT[1]), rtol=1e-6, atol=1e-7)


def test_state_dict_missing_layer_is_an_error():
    c = get_criterion("snip_momentum", {"a": raw_with(W), "b": raw_with(W)})
    with pytest.raises(ConfigError) as e:
        c.load_state_dict({"scores": {"a": torch.zeros(2, 2)}})
    assert "b" in str(e.value) and "\n" not in str(e.value)


def test_magnitude_has_no_state():
    c = get_criterion("magnitude", {"l": raw_with(W)})
    assert c.state_dict() == {}
    c.load_state_dict({})  # fine
