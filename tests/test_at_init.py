"""Pruning at initialization, against hand computations and the papers' definitions: SynFlow's closed form on a
bias-free ReLU network and its conservation of flow, its rounds on the masked network, float64 for deep nets;
GraSP's Hessian-gradient product against an explicit Hessian (``torch.autograd.functional.hessian``) and its
sign (the largest -W * Hg go); |GraSP|; SNIP at init against |W * g| of the same batches; ``schedule=at_init``
with every pattern and distribution."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prunelab.criteria import Calibration, get_criterion
from prunelab.errors import ConfigError
from prunelab.pruner import Pruner
from prunelab.schedule import Schedule


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


AT_INIT = Schedule(0.8, start_step=0, end_step=0)


def bias_free_relu(sizes=(5, 7, 6, 3), seed=0, dtype=torch.float64) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(a, b, bias=False))
    return nn.Sequential(*layers).to(dtype)


def linears(model: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def synflow_closed_form(weights: list[torch.Tensor]) -> tuple[list[torch.Tensor], float]:
    """|theta| * (flow from the all-ones input into the weight's input unit) * (flow from its output unit to the
    summed output), and R = 1^T |W_L| ... |W_1| 1, by matrix products (Tanaka et al. 2020, Sec. 6)."""
    a = [w.detach().abs().double() for w in weights]
    into = [torch.ones(a[0].shape[1], dtype=torch.float64)]  # into[l]: flow into layer l's inputs
    for w in a[:-1]:
        into.append(w @ into[-1])
    out = [torch.ones(a[-1].shape[0], dtype=torch.float64)]  # out[l]: flow from layer l's outputs to R
    for w in reversed(a[1:]):
        out.insert(0, w.T @ out[0])
    scores = [w * o[:, None] * i[None, :] for w, i, o in zip(a, into, out)]
    return scores, float(out[0] @ a[0] @ into[0])


def batch(n=4, d=5, classes=3, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g).to(dtype), torch.randint(0, classes, (n,), generator=g)


# --- SynFlow ----------------------------------------------------------------------------------------------------
def test_synflow_matches_its_closed_form_and_ignores_the_data():
    model = bias_free_relu()
    layers = linears(model)
    crit = get_criterion({"criterion_type": "synflow"}, layers)
    before = {n: m.weight.detach().clone() for n, m in layers.items()}
    crit.score_model(model, [batch()])
    want, flow = synflow_closed_form([m.weight for m in layers.values()])
    assert crit.flow == pytest.approx(flow, rel=1e-12)
    for name, w in zip(layers, want):
        torch.testing.assert_close(crit.scores[name], (w / flow).float(), rtol=1e-6, atol=0)
    first = {n: s.clone() for n, s in crit.scores.items()}
    crit.score_model(model, [(batch(seed=7)[0] * 100, torch.zeros(4, dtype=torch.long))])  # other data: same
    assert all(torch.equal(first[n], crit.scores[n]) for n in first)
    assert all(torch.equal(before[n], m.weight) for n, m in layers.items())  # signs untouched (a copy is scored)
    assert any(bool((m.weight < 0).any()) for m in layers.values())


def test_synflow_conserves_flow_layer_by_layer_and_unit_by_unit():
    """Every layer is a cut of the flow: its scores sum to R (to 1 after our division by R); at every hidden unit
    the scores of the weights in equal the scores of the weights out."""
    model = bias_free_relu(sizes=(6, 9, 8, 7, 4), seed=3)
    layers = linears(model)
    crit = get_criterion({"criterion_type": "synflow"}, layers)
    crit.score_model(model, [batch(d=6)])
    scores = [crit.scores[n].double() * crit.flow for n in layers]
    for s in scores:
        assert float(s.sum()) == pytest.approx(crit.flow, rel=1e-6)
    for s_in, s_out in zip(scores[:-1], scores[1:]):
        torch.testing.assert_close(s_in.sum(1), s_out.sum(0), rtol=1e-6, atol=0)


def test_synflow_scores_the_masked_network():
    model = bias_free_relu(seed=5)
    layers = linears(model)
    with torch.no_grad():
        w = layers["2"].weight
        w[:, :3] = 0  # three hidden units cut from what follows
        w[0] = 0
    crit = get_criterion({"criterion_type": "synflow"}, layers)
    crit.score_model(model, [batch()])
    want, flow = synflow_closed_form([m.weight for m in layers.values()])
    for name, s in zip(layers, want):
        torch.testing.assert_close(crit.scores[name], (s / flow).float(), rtol=1e-6, atol=0)
    assert torch.all(crit.scores["0"][:3] == 0)  # weights into units whose outputs carry no flow score 0
    assert torch.all(crit.scores["2"][0] == 0) and torch.all(crit.scores["2"][:, :3] == 0)


def synflow_rounds_by_hand(weights: list[torch.Tensor], target: float, rounds: int,
                           rank=lambda s, keep: s) -> list[torch.Tensor]:
    """Iterative SynFlow from the closed form: round k scores the network round k-1 left and prunes, in one global
    ranking of ``rank(scores, keep)`` (ties by position), until 1 - (1 - target) ** (k / rounds) of all weights
    are gone. Returns the keep-masks of every round."""
    n = sum(w.numel() for w in weights)
    keep = [torch.ones_like(w, dtype=torch.bool) for w in weights]
    history = []
    for k in range(1, rounds + 1):
        scores, _ = synflow_closed_form([w * m for w, m in zip(weights, keep)])
        t = target if k == rounds else 1 - (1 - target) ** (k / rounds)
        flat = torch.cat([rank(s, m).flatten() for s, m in zip(scores, keep)]).float()
        pruned = torch.zeros(n, dtype=torch.bool)
        pruned[torch.argsort(flat, stable=True)[: math.floor(round(t * n, 6))]] = True
        keep = [~p.reshape(w.shape) for p, w in zip(pruned.split([w.numel() for w in weights]), weights)]
        history.append(keep)
    return history


def test_synflow_rounds_rescore_the_masked_network_by_hand():
    """criterion.rounds=3 at 80%: round k re-scores the network round k-1 left and keeps 0.2 ** (k / 3) of the
    weights, one global ranking, ties broken by position; computed here from the closed form."""
    model = bias_free_relu(sizes=(8, 12, 10, 4), seed=2)
    layers = linears(model)
    keep = synflow_rounds_by_hand([m.weight.detach().clone() for m in layers.values()], 0.8, 3)[-1]
    pruner = Pruner(model, {"criterion_type": "synflow", "rounds": 3},
                    {"type": "1x1", "max_sparsity_ratio_per_op": 1.0}, AT_INIT, calibration=[batch(d=8)])
    pruner.on_step_begin(0)
    for name, want in zip(layers, keep):
        assert torch.equal(pruner.masks[name], want), name


def test_synflow_in_float64_survives_a_deep_network_float32_does_not():
    """60 bias-free layers whose abs weights multiply the flow by ~8 per layer: R ~ 1e54, beyond float32."""
    torch.manual_seed(0)
    model = nn.Sequential(*[m for _ in range(60) for m in (nn.Linear(8, 8, bias=False), nn.ReLU())][:-1])
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.uniform_(-2, 2)
    layers = linears(model)
    crit = get_criterion({"criterion_type": "synflow"}, layers)
    crit.score_model(model, [(torch.randn(2, 8), torch.zeros(2, dtype=torch.long))])
    assert crit.flow > 1e40
    want, flow = synflow_closed_form([m.weight for m in layers.values()])
    assert crit.flow == pytest.approx(flow, rel=1e-9)
    for name, s in zip(layers, want):
        assert torch.isfinite(crit.scores[name]).all()
        torch.testing.assert_close(crit.scores[name], (s / flow).float(), rtol=1e-5, atol=1e-30)
        assert float(crit.scores[name].double().sum()) == pytest.approx(1.0, rel=1e-5)
    f32 = get_criterion({"criterion_type": "synflow", "dtype": "float32"}, layers)
    with pytest.raises(FloatingPointError, match="float64"):
        f32.score_model(model, [(torch.randn(2, 8), torch.zeros(2, dtype=torch.long))])


def test_synflow_options():
    layers = linears(bias_free_relu())
    assert get_criterion({"criterion_type": "synflow"}, layers).rounds == 100  # the paper's
    assert get_criterion({"criterion_type": "synflow", "rounds": 7}, layers).rounds == 7
    for key, value in (("rounds", 0), ("dtype", "float16"), ("rounds", "abc")):
        with pytest.raises(ConfigError, match=f"criterion.{key}") as e:
            get_criterion({"criterion_type": "synflow", key: value}, layers)
        assert "\n" not in str(e.value)


# --- GraSP ------------------------------------------------------------------------------------------------------
def tiny(seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def explicit_hg(model: nn.Module, batches, temperature: float) -> dict[str, torch.Tensor]:
    """H g of the mean loss over all samples of ``batches``, H and g over every Linear weight (biases fixed), from
    the explicit Hessian of torch.autograd.functional.hessian."""
    names = ["0.weight", "2.weight"]
    params = dict(model.named_parameters())
    shapes = [params[n].shape for n in names]
    flat = torch.cat([params[n].detach().flatten() for n in names])
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])

    def loss(v):
        parts = dict(zip(names, [p.reshape(s) for p, s in zip(v.split([math.prod(s) for s in shapes]), shapes)]))
        out = torch.func.functional_call(model, {**{k: p.detach() for k, p in params.items()}, **parts}, (x,))
        return F.cross_entropy(out / temperature, y)

    hess = torch.autograd.functional.hessian(loss, flat)
    grad = torch.autograd.functional.jacobian(loss, flat)
    hg = hess @ grad
    return {n.split(".")[0]: p.reshape(s) for n, p, s in zip(names, hg.split([math.prod(s) for s in shapes]), shapes)}


@pytest.mark.parametrize("temperature", [200.0, 3.0])
@pytest.mark.parametrize("sizes", [(10,), (6, 4)], ids=["one batch", "two batches"])
def test_grasp_hessian_gradient_product_against_the_explicit_hessian(temperature, sizes):
    model = tiny()
    batches = [batch(n, d=4, seed=10 + i) for i, n in enumerate(sizes)]
    want = explicit_hg(model, batches, temperature)
    layers = {"0": model[0]}  # only the first layer is pruned; H and g still span the head's weights too
    crit = get_criterion({"criterion_type": "grasp", "temperature": temperature}, layers)
    got = crit.hessian_gradient(model, batches)
    torch.testing.assert_close(got[0], want["0"], rtol=1e-9, atol=1e-18)
    crit.score_model(model, batches)
    w = model[0].weight.detach()
    torch.testing.assert_close(crit.scores["0"], (w * want["0"]).float(), rtol=1e-5, atol=0)
    both = get_criterion({"criterion_type": "grasp", "temperature": temperature}, {"0": model[0], "2": model[2]})
    hg = both.hessian_gradient(model, batches)
    torch.testing.assert_close(hg[1], want["2"], rtol=1e-9, atol=1e-18)


def test_grasp_removes_the_largest_minus_w_hg_and_grasp_abs_the_smallest_magnitude():
    model = tiny(seed=4)
    calib = [batch(12, d=4, seed=3)]
    hg = explicit_hg(model, calib, 200.0)
    layers = {"0": model[0], "2": model[2]}
    published = {n: -m.weight.detach() * hg[n] for n, m in layers.items()}  # Wang et al.'s S = -theta * Hg
    for name, rank in (("grasp", lambda s: -s), ("grasp_abs", lambda s: s.abs())):
        pruner = Pruner(copy.deepcopy(model), name, "1x1", Schedule(0.5, 0, 0), distribution="uniform",
                        calibration=calib)
        pruner.on_step_begin(0)
        for n, s in published.items():
            keep_score = rank(s).flatten()  # grasp keeps the lowest S; grasp_abs keeps the largest |S|
            order = torch.argsort(keep_score, stable=True)
            want = torch.ones(s.numel(), dtype=torch.bool)
            want[order[: s.numel() // 2]] = False
            assert torch.equal(pruner.masks[n].flatten(), want), (name, n)
        if name == "grasp":
            top = torch.topk(published["0"].flatten(), published["0"].numel() // 2).indices
            assert not pruner.masks["0"].flatten()[top].any()  # literally: the largest -W*Hg are removed


def test_grasp_calibration_is_class_balanced_and_pruned_weights_rank_last():
    layers = {"0": tiny()[0]}
    assert get_criterion({"criterion_type": "grasp"}, layers).calibration == Calibration(per_class=25)
    crit = get_criterion({"criterion_type": "grasp", "samples_per_class": 5}, layers)
    assert crit.calibration == Calibration(per_class=5) and crit.temperature == 200.0
    model = tiny()
    with torch.no_grad():
        model[0].weight[1] = 0.0  # pruned at an earlier pruning step
    crit = get_criterion({"criterion_type": "grasp"}, {"0": model[0]})
    crit.score_model(model, [batch(8, d=4)])
    assert torch.all(crit.scores["0"][1] == -math.inf)  # W*Hg = 0 there: not the lowest of signed scores
    assert torch.isfinite(crit.scores["0"][0]).all()
    for key, value in (("temperature", 0.0), ("samples_per_class", 0), ("temperature", "hot")):
        with pytest.raises(ConfigError, match=f"criterion.{key}"):
            get_criterion({"criterion_type": "grasp", key: value}, layers)


# --- SNIP at initialization ------------------------------------------------------------------------------------
def test_snip_init_is_w_times_the_gradient_of_the_same_batches():
    """|W * g| with g the mean of the two batches' mean-loss gradients, in train mode (BatchNorm on each batch's
    statistics), the model's .grad untouched; without BatchNorm that is the gradient of one concatenated batch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    batches = [batch(8, seed=s, dtype=torch.float32) for s in (1, 2)]
    ref = copy.deepcopy(model).train()
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    loss = sum(F.cross_entropy(ref(bx), by) for bx, by in batches) / 2
    grads = torch.autograd.grad(loss, [ref[0].weight, ref[3].weight])
    want = [(w.detach() * g).abs() for w, g in zip((ref[0].weight, ref[3].weight), grads)]
    crit = get_criterion({"criterion_type": "snip_init", "batches": 2, "batch_size": 8},
                         {"0": model[0], "3": model[3]})
    assert crit.calibration == Calibration(batches=2, batch_size=8)
    crit.score_model(model.eval(), batches)
    torch.testing.assert_close(crit.scores["0"], want[0], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(crit.scores["3"], want[1], rtol=1e-6, atol=1e-9)
    assert model[0].weight.grad is None
    plain = tiny().float()
    g = torch.autograd.grad(F.cross_entropy(plain(x[:, :4]), y), plain[0].weight)[0]
    crit = get_criterion({"criterion_type": "snip_init", "batches": 2}, {"0": plain[0]})
    crit.score_model(plain, [(x[:8, :4], y[:8]), (x[8:, :4], y[8:])])
    torch.testing.assert_close(crit.scores["0"], (plain[0].weight.detach() * g).abs(), rtol=1e-5, atol=1e-9)


def test_snip_init_prunes_at_step_zero_where_snip_is_refused():
    model = tiny().float()
    with pytest.raises(ConfigError, match="snip_init"):
        Pruner(model, "snip", "1x1", AT_INIT, head="2")
    pruner = Pruner(model, "snip_init", "1x1", AT_INIT, head="2", calibration=[batch(8, d=4, dtype=torch.float32)])
    pruner.on_step_begin(0)
    assert int((~pruner.masks["0"]).sum()) == 16  # floor(0.8 * 20), before any optimizer step
    for key, value in (("batches", 0), ("batch_size", 0), ("batches", "two")):
        with pytest.raises(ConfigError, match=f"criterion.{key}"):
            get_criterion({"criterion_type": "snip_init", key: value}, {"0": model[0]})


# --- at_init with every pattern and distribution ----------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 16, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(torch.relu(self.fc(torch.relu(self.conv(x)).flatten(1))))


def expected_pruned(pattern: str, shape: tuple[int, ...], target: float) -> int:
    """Weights a per-layer (uniform) target removes, by the pattern's block arithmetic (DESIGN.md)."""
    rows, cols = shape[0], math.prod(shape[1:])
    if pattern == "4x1":
        return math.floor(target * rows * cols / 4) * 4
    if pattern == "2:4":
        return math.floor(target * (rows * cols // 4) / 0.5) * 2
    if pattern == "channel":
        return math.floor(target * rows) * cols
    return math.floor(target * rows * cols)


@pytest.mark.parametrize("criterion", ["snip_init", "grasp", "grasp_abs", "synflow", "magnitude", "random"])
@pytest.mark.parametrize("pattern", ["1x1", "4x1", "2:4", "channel"])
def test_at_init_composes_with_every_pattern_and_distribution(criterion, pattern):
    target = 0.4
    g = torch.Generator().manual_seed(0)
    calib = [(torch.randn(12, 4, 4, 4, generator=g), torch.arange(12) % 3)]
    config = {"criterion_type": criterion, **({"rounds": 5} if criterion == "synflow" else {}),
              **({"samples_per_class": 4} if criterion.startswith("grasp") else {})}
    for distribution in ("uniform", "global"):
        torch.manual_seed(1)
        model = Net()
        pruner = Pruner(model, config, pattern, Schedule(target, 0, 0), distribution=distribution, head="head",
                        calibration=calib)
        pruner.on_train_begin()
        pruner.on_step_begin(0)
        pruned = {n: int((~m).sum()) for n, m in pruner.masks.items()}
        if distribution == "uniform":
            assert pruned == {n: expected_pruned(pattern, tuple(m.shape), target)
                              for n, m in pruner.masks.items()}, (criterion, pattern)
        else:  # one ranking over all layers: the target counts blocks (N:M: groups made N:M, channel: rows)
            per_block = {"1x1": 1, "4x1": 4, "2:4": 2}
            blocks = {n: m.shape[0] if pattern == "channel" else m.numel() // (1 if pattern == "1x1" else 4)
                      for n, m in pruner.masks.items()}
            made = sum(p // (per_block[pattern] if pattern != "channel" else math.prod(pruner.masks[n].shape[1:]))
                       for n, p in pruned.items())
            frac = 0.5 if pattern == "2:4" else 1.0
            assert made == math.floor(target * sum(blocks.values()) / frac), (criterion, pattern)
        for name, mask in pruner.masks.items():  # the masks are the pattern's, and the weights follow them
            w = getattr(model, name).weight
            assert torch.all(w[~mask] == 0)
            m2 = mask.movedim(1, -1).reshape(mask.shape[0], -1) if mask.dim() > 2 else mask
            if pattern == "4x1":
                blocks = m2.reshape(m2.shape[0] // 4, 4, -1)
                assert torch.all(blocks.all(1) | ~blocks.any(1))
            elif pattern == "2:4":
                kept = m2.reshape(m2.shape[0], -1, 4).sum(-1)
                assert set(kept.unique().tolist()) <= {2, 4}
            elif pattern == "channel":
                assert torch.all(m2.all(1) | ~m2.any(1))


@pytest.mark.parametrize("criterion, schedule, said", [
    ("snip_init", Schedule(0.8, start_step=0, end_step=40, pruning_frequency=20), "prunes 3 times (steps 0-40), "
     "so it is re-scored during training"),
    ("synflow", Schedule(0.8, start_step=10, end_step=10), "prunes once, at step 10, so it scores trained weights"),
    ("grasp", AT_INIT, False),
    ("magnitude", Schedule(0.8, start_step=0, end_step=40, pruning_frequency=20), False),  # made for gradual
])
def test_a_run_says_when_an_at_init_criterion_is_rescored_during_training(criterion, schedule, said, caplog):
    """snip_init/grasp/synflow under a gradual schedule are re-scored at every pruning step (or, pruned once later,
    score trained weights), not the published method: the run says so at its start, naming schedule=at_init (a
    sweep that forgets it is otherwise silent)."""
    from types import SimpleNamespace

    from prunelab.app import _say_when_not_at_init

    pruner = Pruner(bias_free_relu(dtype=torch.float32), criterion, "1x1", schedule)
    cfg = SimpleNamespace(criterion=SimpleNamespace(criterion_type=criterion))
    for rank in (1, 0):
        caplog.clear()
        _say_when_not_at_init(pruner, cfg, SimpleNamespace(rank=rank))
        lines = [r.getMessage() for r in caplog.records]
        if said and rank == 0:
            assert lines == [f"prunelab: criterion={criterion} scores once per pruning step; this schedule {said}. "
                             "Pruning at initialization as published: add schedule=at_init"], lines
        else:
            assert lines == [], lines
