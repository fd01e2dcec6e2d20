"""The sanity ablations of Frankle et al. 2021 (``criterion.ablation``): shuffle keeps every layer's count and
moves the positions (as the pattern's blocks), seeded; invert prunes the top (and keeps pruned weights pruned
across SynFlow's rounds); reinit re-draws the kept weights only, from the model's own initializer; one-shot
ablations refuse gradual schedules."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from prunelab import models
from prunelab.criteria.ablations import ABLATIONS, get_ablation
from prunelab.errors import ConfigError
from prunelab.pruner import Pruner
from prunelab.schedule import Schedule

from test_at_init import bias_free_relu, linears, synflow_rounds_by_hand

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 24)
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def make_net(seed=0):
    torch.manual_seed(seed)
    return Net()


def prune(model, ablation, criterion="magnitude", pattern="1x1", target=0.75, distribution="global", seed=0,
          schedule=None, **kw):
    g = torch.Generator().manual_seed(5)
    calib = [(torch.randn(30, 16, generator=g), torch.arange(30) % 3)]
    abl = get_ablation(ablation, seed=seed, initializer=kw.pop("initializer", None))
    pruner = Pruner(model, criterion, pattern, schedule or Schedule(target, 0, 0), distribution=distribution,
                    head="head", calibration=calib, ablation=abl, **kw)
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    return pruner


def pruned_counts(pruner):
    return {n: int((~m).sum()) for n, m in pruner.masks.items()}


# --- shuffle --------------------------------------------------------------------------------------------------
def test_shuffle_keeps_every_layers_count_and_moves_the_positions():
    plain = prune(make_net(), "none")
    shuffled = prune(make_net(), "shuffle")
    assert pruned_counts(shuffled) == pruned_counts(plain)  # per-layer sparsity exactly kept
    assert len(set(pruned_counts(plain).values())) == 2  # global magnitude: the layers differ (not a trivial case)
    for name, m in shuffled.masks.items():
        kept_plain = plain.masks[name]
        overlap = int((m & kept_plain).sum()) / int(kept_plain.sum())
        density = float(m.float().mean())
        assert overlap < density + 0.15, (name, overlap, density)  # about chance, not the criterion's choice
        w = getattr(make_net(), name).weight.detach().abs()
        # magnitude keeps the largest weights; the shuffled mask keeps weights of about average size
        assert float(w[kept_plain].mean()) > 1.5 * float(w.mean())
        assert abs(float(w[m].mean()) - float(w.mean())) < 0.25 * float(w.mean())
    for name, m in shuffled.masks.items():  # and the weights follow the shuffled mask
        assert torch.all(getattr(shuffled.model, name).weight[~m] == 0)
    assert shuffled.changed == plain.changed  # masks/changed: what the step removed from the dense network


@pytest.mark.parametrize("criterion", ["magnitude", {"criterion_type": "synflow", "rounds": 4}], ids=["magnitude",
                                                                                                   "synflow"])
def test_shuffled_masks_keep_the_initial_values(criterion):
    """A weight the criterion pruned (zeroed, over SynFlow's rounds too) but the shuffled mask keeps has its
    initial value again, not 0: the shuffled network is the initial network under another mask."""
    model = make_net()
    initial = {n: getattr(model, n).weight.detach().clone() for n in ("fc1", "fc2")}
    pruner = prune(model, "shuffle", criterion=criterion, target=0.8)
    plain = prune(make_net(), "none", criterion=criterion, target=0.8)
    for name, m in pruner.masks.items():
        w = getattr(model, name).weight.detach()
        assert bool((m & ~plain.masks[name]).any())  # some kept weights were pruned by the criterion
        assert torch.equal(w[m], initial[name][m]) and torch.all(w[~m] == 0)


def test_shuffle_is_seeded_by_the_run_seed():
    a, b = prune(make_net(), "shuffle", seed=0), prune(make_net(), "shuffle", seed=0)
    c = prune(make_net(), "shuffle", seed=1)
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
    assert not all(torch.equal(a.masks[n], c.masks[n]) for n in a.masks)
    model = make_net()
    rng = torch.get_rng_state()
    prune(model, "shuffle", seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # its own generator: the training RNG does not move


@pytest.mark.parametrize("pattern", ["4x1", "2:4", "channel"])
def test_shuffle_moves_the_patterns_blocks(pattern):
    target = 0.4
    plain = prune(make_net(), "none", pattern=pattern, target=target)
    shuffled = prune(make_net(), "shuffle", pattern=pattern, target=target)
    assert pruned_counts(shuffled) == pruned_counts(plain)
    assert any(not torch.equal(shuffled.masks[n], plain.masks[n]) for n in plain.masks)
    for m in shuffled.masks.values():
        if pattern == "4x1":
            blocks = m.reshape(m.shape[0] // 4, 4, -1)
            assert torch.all(blocks.all(1) | ~blocks.any(1))
        elif pattern == "2:4":
            assert set(m.reshape(m.shape[0], -1, 4).sum(-1).unique().tolist()) <= {2, 4}
        else:
            assert torch.all(m.all(1) | ~m.any(1))


# --- invert ---------------------------------------------------------------------------------------------------
def test_invert_prunes_the_top():
    model = make_net()
    w = {n: getattr(model, n).weight.detach().abs().clone() for n in ("fc1", "fc2")}
    inverted = prune(model, "invert", target=0.7, distribution="uniform")
    for name, m in inverted.masks.items():
        k = math.floor(0.7 * m.numel())
        top = torch.topk(w[name].flatten(), k).indices
        want = torch.ones(m.numel(), dtype=torch.bool)
        want[top] = False
        assert torch.equal(m.flatten(), want), name
    assert torch.equal(inverted.criterion.scores["fc1"], w["fc1"])  # the criterion's own scores are untouched


def test_invert_with_synflow_rounds_keeps_pruned_weights_pruned():
    """Inverted iterative SynFlow, by hand: round k re-scores the masked network and prunes the highest scores of
    the weights still kept until 1 - 0.25 ** (k / 3) of all are gone (one global ranking)."""
    model = bias_free_relu(sizes=(8, 12, 10, 4), seed=2)
    layers = linears(model)
    history = synflow_rounds_by_hand([m.weight.detach().clone() for m in layers.values()], 0.75, 3,
                                     rank=lambda s, keep: torch.where(keep, -s, -math.inf))
    for old, new in zip(history[:-1], history[1:]):
        assert all(not bool((n & ~o).any()) for o, n in zip(old, new))  # nothing revives
    keep = history[-1]
    pruner = Pruner(model, {"criterion_type": "synflow", "rounds": 3},
                    {"type": "1x1", "max_sparsity_ratio_per_op": 1.0}, Schedule(0.75, 0, 0), ablation="invert",
                    calibration=[(torch.ones(1, 8, dtype=torch.float64), torch.zeros(1, dtype=torch.long))])
    pruner.on_step_begin(0)
    for name, want in zip(layers, keep):
        assert torch.equal(pruner.masks[name], want), name


def test_invert_in_a_gradual_schedule_never_revives():
    model = make_net()
    pruner = Pruner(model, "magnitude", "1x1", Schedule(0.8, start_step=0, end_step=4, pruning_frequency=2),
                    head="head", ablation="invert")
    pruner.on_train_begin()
    before = {n: m.clone() for n, m in pruner.masks.items()}
    for step in range(5):
        pruner.on_step_begin(step)
        for n, m in pruner.masks.items():
            assert not bool((m & ~before[n]).any()), (step, n)
            before[n] = m.clone()
    assert pruner.masked_fraction() == pytest.approx(math.floor(0.8 * (512 + 768)) / (512 + 768))


# --- reinit ---------------------------------------------------------------------------------------------------
def test_reinit_changes_the_kept_weights_only():
    model = make_net()
    original = copy.deepcopy(model.state_dict())
    pruner = prune(model, "reinit", target=0.6)
    plain = prune(make_net(), "none", target=0.6)
    for name in ("fc1", "fc2"):
        m, w = pruner.masks[name], getattr(model, name).weight.detach()
        assert torch.equal(m, plain.masks[name])  # the criterion's mask, from the original weights
        assert torch.all(w[~m] == 0)
        assert bool((w[m] != original[f"{name}.weight"][m]).all())  # every kept weight re-drawn
        bound = 1 / math.sqrt(w.shape[1])  # no initializer given: nn.Linear.reset_parameters, U(-1/sqrt(in), ..)
        assert float(w[m].abs().max()) <= bound
        assert float(w[m].std()) == pytest.approx(bound / math.sqrt(3), rel=0.15)
    for key in ("fc1.bias", "fc2.bias", "head.weight", "head.bias"):  # biases and the dense head untouched
        assert torch.equal(model.state_dict()[key], original[key]), key


def test_reinit_draws_from_the_models_own_initializer_without_moving_the_rng():
    """The values come from a newly built model (the app passes the model's builder): a builder that sets every
    weight to 0.5 gives 0.5 at every kept position; the global RNG is where it was."""
    def builder():
        net = Net()
        for p in net.parameters():
            nn.init.constant_(p, 0.5)
        return net

    model = make_net()
    rng = torch.get_rng_state()
    pruner = prune(model, "reinit", initializer=builder)
    assert torch.equal(torch.get_rng_state(), rng)
    for name, m in pruner.masks.items():
        w = getattr(model, name).weight
        assert torch.all(w[m] == 0.5) and torch.all(w[~m] == 0)
    a = prune(make_net(), "reinit", seed=4)
    b = prune(make_net(), "reinit", seed=4)
    c = prune(make_net(), "reinit", seed=5)
    assert torch.equal(a.model.fc1.weight, b.model.fc1.weight)
    assert not torch.equal(a.model.fc1.weight, c.model.fc1.weight)


def test_reinit_uses_resnet20s_kaiming_normal_through_the_app_initializer():
    """ResNet-20 initialises its convs kaiming-normal (fan_out): std sqrt(2 / (out * 9)); a conv's own
    reset_parameters would give kaiming-uniform(a=sqrt(5)), std 1 / sqrt(3 * fan_in) (for 16 -> 16: 0.118 vs
    0.048). The re-drawn kept weights must follow the model's initializer."""
    cfg = {"name": "resnet20", "input_shape": [3, 32, 32], "num_classes": 10, "depth": 20, "head": "fc"}
    torch.manual_seed(0)
    model = models.build(cfg)
    original = model.layer1[0].conv1.weight.detach().clone()
    ablation = get_ablation("reinit", seed=0, initializer=lambda: models.build(cfg))
    pruner = Pruner(model, "magnitude", "1x1", Schedule(0.5, 0, 0), head="fc", ablation=ablation)
    pruner.on_step_begin(0)
    w, m = model.layer1[0].conv1.weight.detach(), pruner.masks["layer1.0.conv1"]
    assert float(w[m].std()) == pytest.approx(math.sqrt(2 / (16 * 9)), rel=0.1)
    assert bool((w[m] != original[m]).all()) and torch.all(w[~m] == 0)


def test_reinit_at_a_later_one_shot_step_zeroes_the_kept_weights_optimizer_state():
    model = make_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pruner = Pruner(model, "magnitude", "1x1", Schedule(0.5, start_step=3, end_step=3), head="head",
                    ablation="reinit", optimizer=opt)
    pruner.on_train_begin()
    g = torch.Generator().manual_seed(0)
    for step in range(4):
        pruner.on_step_begin(step)
        if step == 3:
            for name in ("fc1", "fc2"):  # the re-drawn (kept) weights start afresh; pruned ones stay 0 anyway
                buf = opt.state[getattr(model, name).weight]["momentum_buffer"]
                assert torch.all(buf[pruner.masks[name]] == 0)
            assert bool(opt.state[model.head.weight]["momentum_buffer"].ne(0).any())  # not pruned: untouched
        x, y = torch.randn(8, 16, generator=g), torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        pruner.on_after_optimizer_step()


# --- what is refused ------------------------------------------------------------------------------------------
def test_one_shot_ablations_refuse_a_gradual_schedule_and_unknown_names_are_one_line():
    gradual = Schedule(0.8, start_step=2, end_step=6, pruning_frequency=2)
    for name in ("shuffle", "reinit"):
        with pytest.raises(ConfigError, match=rf"^criterion.ablation='{name}': none or invert .* 3 pruning steps"):
            Pruner(make_net(), "magnitude", "1x1", gradual, head="head", ablation=name)
        Pruner(make_net(), "magnitude", "1x1", Schedule(0.8, 5, 5), head="head", ablation=name)  # one-shot later
    Pruner(make_net(), "magnitude", "1x1", gradual, head="head", ablation="invert")
    with pytest.raises(ConfigError, match="criterion.ablation='bogus': registered: invert, none, reinit, shuffle"):
        Pruner(make_net(), {"criterion_type": "magnitude", "ablation": "bogus"}, "1x1", gradual, head="head")
    assert set(ABLATIONS.names()) == {"none", "shuffle", "invert", "reinit"}


def test_the_criterion_configs_ablation_key_is_read():
    pruner = Pruner(make_net(), {"criterion_type": "magnitude", "ablation": "invert"}, "1x1", Schedule(0.5, 0, 0),
                    head="head")
    assert pruner.ablation.name == "invert"
    assert Pruner(make_net(), "magnitude", "1x1", Schedule(0.5, 0, 0), head="head").ablation.name == "none"


def test_prunelab_list_shows_the_ablations(capsys):
    from prunelab.listing import main

    assert main(["ablations"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ablations (criterion.ablation):")
    assert all(f"  {name} " in out for name in ("none", "shuffle", "invert", "reinit"))
