"""The wave-2 criterion contract and the pruner's new seams: declared score hooks checked at registration,
model-level scoring (at init and at later pruning steps, in rounds, sandboxed), mask updaters that grow weights
(optimizer state reset), distributions and their scope alias, block scores, snip_momentum's every-step history."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from prunelab.criteria import CRITERIA, Calibration, PruningCriterion, ScoreHook, get_criterion, register_criterion
from prunelab.errors import ConfigError
from prunelab.pruner import Pruner
from prunelab.regrowth import MaskUpdater
from prunelab.schedule import Schedule
from prunelab.sparsity.patterns import Pattern


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Net(nn.Module):
    def __init__(self, bn: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8) if bn else nn.Identity()
        self.fc2 = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.bn(self.fc1(x))))))


def make_net(seed=0, bn=False):
    torch.manual_seed(seed)
    return Net(bn)


def batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(10, 6, generator=g), torch.randint(0, 3, (10,), generator=g)) for _ in range(n)]


def registered(name):
    """Register the decorated class for one test and remove it afterwards (the caller pops it)."""
    return register_criterion(name)


# --- declarations are checked when the class is registered -------------------------------------------------
def test_misspelled_hook_fails_at_registration():
    with pytest.raises(TypeError, match="score_hook='on_step_begun'"):
        @register_criterion("test_misspelled")
        class Misspelled(PruningCriterion):
            score_hook = "on_step_begun"

            def on_step_begin(self):
                pass
    assert "test_misspelled" not in CRITERIA


def test_declared_hook_not_implemented_fails_at_registration():
    with pytest.raises(TypeError, match="does not implement on_before_optimizer_step"):
        @register_criterion("test_unimplemented")
        class Unimplemented(PruningCriterion):  # declares the gradient hook but overrides another one
            score_hook = ScoreHook.BEFORE_OPTIMIZER_STEP

            def on_step_begin(self):
                pass
    with pytest.raises(TypeError, match="does not implement score_model"):
        @register_criterion("test_model_unimplemented")
        class NoPasses(PruningCriterion):
            score_hook = "model"
    with pytest.raises(TypeError, match="rounds"):
        @register_criterion("test_bad_rounds")
        class BadRounds(PruningCriterion):
            score_hook = "model"
            rounds = 0

            def score_model(self, model, batches):
                pass
    assert not {"test_unimplemented", "test_model_unimplemented", "test_bad_rounds"} & set(CRITERIA)


def test_declared_string_hook_becomes_the_enum():
    try:
        @register_criterion("test_string_hook")
        class StringHook(PruningCriterion):
            score_hook = "on_after_optimizer_step"

            def on_after_optimizer_step(self):
                pass
        assert StringHook.score_hook is ScoreHook.AFTER_OPTIMIZER_STEP
    finally:
        CRITERIA._items.pop("test_string_hook", None)


# --- model-level scoring ------------------------------------------------------------------------------------
class Probe(PruningCriterion):
    """score_model: |W| of the current (masked) weights plus the position, recording every call."""

    score_hook = ScoreHook.MODEL
    calibration = Calibration(batches=2)

    def __init__(self, modules, config=None):
        super().__init__(modules, config)
        self.calls = []

    def score_model(self, model, batches):
        batches = list(batches)
        kept = {n: int((w != 0).sum()) for n, w in zip(self.names, self.weights)}
        self.calls.append({"batches": batches, "kept": kept, "training": model.training})
        for x, _ in batches:  # forward passes in train mode: BatchNorm statistics move, grads appear
            model.train()
            model(x).sum().backward()
        torch.rand(3)  # and the global RNG moves
        with torch.no_grad():
            for s, w in zip(self._score_list, self.weights):
                s.copy_(w.abs() + torch.arange(w.numel()).reshape(w.shape) * 1e-6)


@pytest.fixture
def probe():
    cls = register_criterion("test_probe")(type("TestProbe", (Probe,), {}))
    yield cls
    CRITERIA._items.pop("test_probe", None)


@pytest.fixture
def probe_rounds():
    cls = register_criterion("test_probe_rounds")(type("TestProbeRounds", (Probe,), {"rounds": 4}))
    yield cls
    CRITERIA._items.pop("test_probe_rounds", None)


def test_model_criterion_at_init_and_at_a_later_pruning_step(probe):
    model = make_net(bn=True)
    calib = batches(2, seed=9)
    requests = []
    pruner = Pruner(model, "test_probe", "1x1",
                    Schedule(0.5, start_step=0, end_step=4, pruning_frequency=4, initial_sparsity=0.25),
                    distribution="uniform", head="head",
                    calibration=lambda req: requests.append(req) or calib)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner.on_train_begin()
    for step, (x, y) in enumerate(batches(6)):
        pruner.on_step_begin(step)
        if step == 0:  # at init: scored and pruned before any optimizer step
            assert len(probe_calls(pruner)) == 1 and pruner.pruned_at_step
            assert pruner.target == 0.25  # the first of two pruning steps targets s0
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        pruner.on_before_optimizer_step()
        opt.step()
        pruner.on_after_optimizer_step()
    calls = probe_calls(pruner)
    assert len(calls) == 2  # step 0 and step 4, nowhere else
    assert requests == [Calibration(batches=2)] * 2  # the criterion's own request reaches the data source
    assert all(c["batches"] == calib for c in calls)
    assert calls[0]["kept"] == {"fc1": 48, "fc2": 64}
    assert calls[1]["kept"] == {"fc1": 36, "fc2": 48}  # the second pass sees the network masked at 0.25
    assert pruner.target == 0.5
    for name in ("fc1", "fc2"):
        assert int((~pruner.masks[name]).sum()) == pruner.masks[name].numel() // 2


def probe_calls(pruner):
    return pruner.criterion.calls


def test_model_scoring_rounds_rescore_the_masked_network(probe_rounds):
    model = make_net()
    pruner = Pruner(model, "test_probe_rounds", "1x1", Schedule(0.9, start_step=0, end_step=0),
                    distribution="uniform", head="head", calibration=batches(1))
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    calls = pruner.criterion.calls
    assert len(calls) == 4
    n = {"fc1": 48, "fc2": 64}
    for k, call in enumerate(calls):  # round k+1 scores the network round k left: kept = n * (0.1) ** (k / 4)
        for name, size in n.items():
            want = size - math.floor(round((1 - 0.1 ** (k / 4)) * size, 6))
            assert call["kept"][name] == want, (k, name)
    assert {name: int(m.sum()) for name, m in pruner.masks.items()} == {"fc1": 48 - 43, "fc2": 64 - 57}
    assert pruner.changed == {"fc1": 43, "fc2": 57}  # flips summed over the rounds


def test_model_scoring_leaves_no_trace_on_training(probe):
    """Scoring passes must not move BatchNorm statistics, leave gradients, change train/eval mode or the RNG."""
    model = make_net(bn=True)
    model.eval()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    before_buffers = [b.clone() for b in model.buffers()]
    rng = torch.get_rng_state()
    pruner = Pruner(model, "test_probe", "1x1", Schedule(0.5, start_step=0, end_step=0), head="head",
                    calibration=batches(2))
    pruner.on_step_begin(0)
    assert pruner.criterion.calls  # it did run (in train mode, with backward passes)
    assert all(torch.equal(a, b) for a, b in zip(before_buffers, model.buffers()))
    assert all(torch.equal(p.grad, torch.full_like(p, 0.25)) for p in model.parameters())
    assert not model.training and not model.bn.training
    assert torch.equal(torch.get_rng_state(), rng)


def test_model_criterion_without_calibration_or_model_is_one_line(probe):
    pruner = Pruner(make_net(), "test_probe", "1x1", Schedule(0.5, start_step=0, end_step=0), head="head")
    with pytest.raises(ConfigError, match="pruner.calibration"):
        pruner.on_step_begin(0)
    net = make_net()
    pruner = Pruner({"fc1": net.fc1}, "test_probe", "1x1", Schedule(0.5, start_step=0, end_step=0),
                    calibration=batches(1))
    with pytest.raises(ConfigError, match="pruner.model"):
        pruner.on_step_begin(0)


def test_gradient_criterion_at_init_is_refused_with_a_pointer_to_snip_init():
    with pytest.raises(ConfigError, match="snip_init"):
        Pruner(make_net(), "snip", "1x1", Schedule(0.5, start_step=0, end_step=0), head="head")


# --- mask updaters that grow weights ------------------------------------------------------------------------
class Regrow(MaskUpdater):
    """Test updater: at its step, turns every pruned weight of the first row back on and prunes as many of the
    largest kept weights' positions in the last row (so per-layer sparsity stays the same)."""

    def __init__(self, at):
        self.at = at
        self.grown = {}

    def is_update_step(self, step):
        return step == self.at

    @property
    def last_step(self):
        return self.at

    def update(self, pruner, step):
        new = {}
        for name, mask in pruner.masks.items():
            m = mask.clone()
            off, on_last = (~m[0]).nonzero().flatten(), m[-1].nonzero().flatten()
            k = min(len(off), len(on_last))
            off, on_last = off[:k], on_last[:k]
            m[0, off] = True
            m[-1, on_last] = False
            self.grown[name] = off
            new[name] = m
        return new


@pytest.mark.parametrize("opt_name", ["sgd", "adam", "adamw"])
def test_updater_grows_weights_with_zero_optimizer_state(opt_name):
    model = make_net()
    updater = Regrow(at=6)
    pruner = Pruner(model, "magnitude", "1x1", Schedule(0.5, start_step=2, end_step=2), head="head",
                    distribution="uniform", updater=updater)
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
            "adam": lambda p: torch.optim.Adam(p, lr=0.01), "adamw": lambda p: torch.optim.AdamW(p, lr=0.01)}
    opt = make[opt_name](model.parameters())
    pruner.bind(optimizer=opt)
    data = batches(8)
    pruner.on_train_begin()
    for step, (x, y) in enumerate(data):
        if step == 6:
            state_before = {n: {k: v.clone() for k, v in opt.state[getattr(model, n).weight].items()
                                if torch.is_tensor(v) and v.dim() > 0} for n in ("fc1", "fc2")}
            masks_before = {n: m.clone() for n, m in pruner.masks.items()}
            with torch.no_grad():  # a write from outside (a custom loop): grown weights must still start at 0
                for n, m in masks_before.items():
                    getattr(model, n).weight[~m] = 5.0
        pruner.on_step_begin(step)
        if step == 6:
            assert pruner.pruned_at_step
            for name in ("fc1", "fc2"):
                w, mask, old = getattr(model, name).weight, pruner.masks[name], masks_before[name]
                grown, dropped = mask & ~old, old & ~mask
                assert int(grown.sum()) == int(dropped.sum()) > 0  # per-layer sparsity constant
                assert grown[0].sum() == grown.sum()  # the first row's pruned weights came back
                assert pruner.changed[name] == int(grown.sum() + dropped.sum())
                assert torch.all(w[grown] == 0)  # grown weights start at 0
                state = {k: v for k, v in opt.state[w].items() if torch.is_tensor(v) and v.dim() > 0}
                assert state, opt_name
                for key, value in state.items():  # zero where grown, untouched elsewhere
                    assert torch.all(value[grown] == 0), (name, key)
                    assert torch.equal(value[~grown], state_before[name][key][~grown]), (name, key)
                    assert bool(state_before[name][key][grown].ne(0).any()), "the test needs non-zero state to reset"
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        pruner.on_before_optimizer_step()
        opt.step()
        pruner.on_after_optimizer_step()
    for name, m in pruner.masks.items():
        assert torch.all(getattr(model, name).weight[~m] == 0)


def test_ranking_update_keeps_the_reference_optimizer_state():
    """The wave-1 criteria recompute masks from scores (gradient may bring a pruned weight back at value 0); as in
    the reference, that does not touch optimizer state (golden runs pin it). Only updaters that ask reset it."""
    model = make_net()
    pruner = Pruner(model, "gradient", "1x1", Schedule(0.5, start_step=2, end_step=4, pruning_frequency=1),
                    head="head")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pruner.bind(optimizer=opt)
    pruner.on_train_begin()
    regrown = 0
    for step, (x, y) in enumerate(batches(6)):
        old = {n: m.clone() for n, m in pruner.masks.items()}
        bufs = {n: opt.state[getattr(model, n).weight]["momentum_buffer"].clone()
                for n in ("fc1", "fc2")} if step else None
        pruner.on_step_begin(step)
        for n in ("fc1", "fc2"):
            grown = pruner.masks[n] & ~old[n]
            regrown += int(grown.sum())
            if bufs is not None and grown.any():
                assert torch.equal(opt.state[getattr(model, n).weight]["momentum_buffer"], bufs[n])
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        pruner.on_before_optimizer_step()
        opt.step()
        pruner.on_after_optimizer_step()
    assert regrown > 0, "the test needs the gradient criterion to bring weights back"


# --- snip_momentum's running score is updated at every step --------------------------------------------------
def test_snip_momentum_history_is_updated_at_every_step():
    """S_t = 0.9 S_{t-1} + |W_t * g_t| from step 0: computed by hand from the W and g of every step, it must equal
    the pruner's scores at the pruning step. Updating only before scoring steps (or from the first pruning step)
    gives a different S."""
    model = make_net()
    pruner = Pruner(model, "snip_momentum", "1x1", Schedule(0.5, start_step=6, end_step=6), head="head")
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    expected = {n: torch.zeros_like(getattr(model, n).weight) for n in ("fc1", "fc2")}
    pruner.on_train_begin()
    for step, (x, y) in enumerate(batches(6)):
        pruner.on_step_begin(step)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        for n, s in expected.items():
            w = getattr(model, n).weight
            expected[n] = 0.9 * s + (w * w.grad).abs()
        pruner.on_before_optimizer_step()
        opt.step()
        pruner.on_after_optimizer_step()
    for n, s in expected.items():
        torch.testing.assert_close(pruner.criterion.scores[n], s, rtol=1e-6, atol=1e-9)


# --- distributions --------------------------------------------------------------------------------------------
def scores_of(seed=4):
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.rand(8, 12, generator=g), "b": torch.rand(16, 4, generator=g) * 3}


def test_uniform_distribution_is_the_local_scope():
    s = scores_of()
    by_alias = Pattern("1x1", scope="local").masks(s, 0.75)
    by_name = Pattern("1x1").masks(s, 0.75, distribution="uniform")
    assert all(torch.equal(by_alias[n], by_name[n]) for n in s)
    assert [int((~m).sum()) for m in by_name.values()] == [72, 48]  # floor(0.75 * n) in every layer
    glob = Pattern("1x1").masks(s, 0.75)  # default: one threshold, layers differ
    assert sum(int((~m).sum()) for m in glob.values()) == 120
    assert [int((~m).sum()) for m in glob.values()] != [72, 48]


def test_scope_that_contradicts_the_distribution_is_one_line():
    with pytest.raises(ConfigError, match="pattern.scope"):
        Pruner(make_net(), "magnitude", {"type": "1x1", "scope": "global"}, Schedule(0.5, 1, 1),
               distribution="uniform", head="head")
    p = Pruner(make_net(), "magnitude", {"type": "1x1", "scope": "local"}, Schedule(0.5, 1, 1), head="head")
    assert p.distribution.name == "uniform"
    with pytest.raises(ConfigError, match="distribution.name"):
        Pruner(make_net(), "magnitude", "1x1", Schedule(0.5, 1, 1), distribution="bogus", head="head")


def test_criterion_restricted_to_global_ranking_refuses_uniform():
    try:
        @register_criterion("test_global_only")
        class GlobalOnly(PruningCriterion):
            distributions = ("global",)
            distributions_reason = "its scores are comparable across layers only when ranked together"

            def on_step_begin(self):
                pass

        with pytest.raises(ConfigError, match=r"^distribution='uniform': global for criterion test_global_only"):
            Pruner(make_net(), "test_global_only", "1x1", Schedule(0.5, 1, 1), distribution="uniform", head="head")
        Pruner(make_net(), "test_global_only", "1x1", Schedule(0.5, 1, 1), head="head")
    finally:
        CRITERIA._items.pop("test_global_only", None)


# --- what the masks rank ---------------------------------------------------------------------------------------
def test_block_scores_are_what_the_masks_compare():
    w = torch.arange(32, dtype=torch.float32).reshape(8, 4)
    s = {"l": w}
    blocks = Pattern("4x1").block_scores(s)["l"]
    assert blocks.shape == (2, 4)
    assert torch.equal(blocks[0], w[:4].mean(0)) and torch.equal(blocks[1], w[4:].mean(0))
    assert torch.equal(Pattern("4x1", block_reduce="max").block_scores(s)["l"][1], w[7])
    nm = Pattern("2:4").block_scores(s)["l"]  # mean of the two weights 2:4 would remove = the two lowest
    assert nm.shape == (8, 1) and torch.equal(nm[:, 0], (w[:, 0] + w[:, 1]) / 2)
    assert torch.equal(Pattern("channel", block_reduce="sum").block_scores(s)["l"], w.sum(1))
    conv = {"c": torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)}  # [out, in, kh, kw]
    cb = Pattern("1x3").block_scores(conv)["c"]  # 1x3 spans the 3 input channels at one kernel position
    assert cb.shape == (2, 4) and cb[0, 0] == conv["c"][0, :, 0, 0].mean()
    pruner = Pruner(make_net(), "magnitude", "4x1", Schedule(0.5, 1, 1), head="head")
    before = {n: getattr(pruner.model, n).weight.detach().abs().clone() for n in ("fc1", "fc2")}
    pruner.on_step_begin(1)  # scores |W| of the weights as they stood, then prunes
    for name, b in pruner.block_scores().items():
        w = before[name]
        assert torch.equal(b, w.reshape(w.shape[0] // 4, 4, w.shape[1]).mean(1))
        kept = pruner.masks[name][::4]  # a 4x1 block is kept or pruned whole
        assert torch.all(b[~kept] <= b[kept].min())  # global ranking: every pruned block scores <= every kept one


# --- through the trainer: calibration batches from the training split, at_init -----------------------------
def test_model_criterion_through_the_app_at_init(probe, tmp_path):
    """The trainer hands the pruner its model and calibration batches (training samples, the criterion's request);
    schedule=at_init prunes before the first optimizer step, and the masks then stay fixed to the end."""
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from appkit import run_inprocess

    s = run_inprocess(["criterion.criterion_type=test_probe", "schedule=at_init", "schedule.target_sparsity=0.8",
                       "trainer.max_steps=20", "trainer.eval_every=10", "trainer.progress=none", "logger=none",
                       "trainer.batch_size=16"], tmp_path / "run")
    assert s["status"] == "finished" and s["sparsity/actual"] == pytest.approx(0.8, abs=1e-3)
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["step"] == 0 and metrics[0]["sparsity/masked"] == pytest.approx(0.8, abs=1e-3)
    masks = torch.load(tmp_path / "run" / "masks.pt", weights_only=True)
    first = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["pruner"]["masks"]
    assert all(torch.equal(masks[n], first[n]) for n in masks)  # fixed after init


def test_prunelab_list_comes_from_the_registries(probe, capsys):
    from prunelab.listing import main

    assert main(["criteria"]) == 0
    out = capsys.readouterr().out
    assert "test_probe" in out  # registered a moment ago: the listing reads the registry, not a fixed table
    assert "Lee, Ajanthan & Torr 2019" in " ".join(out.split())  # the paper of snip (lines wrap)
    assert main([]) == 0
    out = capsys.readouterr().out
    for section in ("criteria", "patterns", "distributions", "schedules", "regrowth", "models", "datasets",
                    "experiments", "optimizers", "loggers"):
        assert f"\n{section} (" in "\n" + out, section
    assert "distribution=er|erk|global|per_row|uniform" in out
    flat = " ".join(out.split())  # options that are no registered name: the first sentence of their file's comment
    assert "rigl RigL in one option (Evci et al. 2020): random initial masks at the target, split over layers by " \
           "ERK, pruned at initialization, then regrown with regrowth=rigl (drop smallest |W|, grow largest |grad|). " \
           "set SET in one option" in flat
    assert "none no regrowth: masks change only at the schedule's pruning steps config options:" in flat
    for group, kind in (("criterion", "criteria"), ("model", "models"), ("distribution", "distributions")):
        assert main([group]) == 0  # the group's name, as in criterion=..., lists its kind
        assert capsys.readouterr().out.startswith(f"{kind} (")
    # groups without a registry: the comparisons ready to run, each with the first sentence of its comment
    from prunelab.listing import conf_dir

    assert main(["experiment"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "experiments (+experiment=NAME, conf/experiment/NAME.yaml; `prunelab list experiment NAME` " \
                       "shows one whole):"
    presets = {ln.split()[0]: ln.split(None, 1)[1] for ln in lines[1:] if not ln.startswith("   ")}
    assert sorted(presets) == sorted(f.stem for f in (conf_dir() / "experiment").glob("*.yaml"))
    assert all(presets.values()), presets  # every preset says what it compares
    assert presets["lenet5_mnist"].startswith("LeNet-5 on MNIST: the five first-wave criteria (magnitude,")
    assert main(["optimizers"]) == 0 and "  adamw  torch.optim.AdamW\n" in capsys.readouterr().out
    # each entry's own config keys, with their defaults and comments (inherited ones too: SET's from DropAndGrow)
    assert main(["criteria"]) == 0 and main(["regrowth"]) == 0
    flat = " ".join(capsys.readouterr().out.split())
    assert "Keys: criterion.alpha=0.9 (weight of the history); criterion.beta=1.0 (weight of the current |W * g|)" in flat
    assert "criterion.batch_size=null (samples per calibration batch" in flat  # wanda: None as the config writes it
    set_keys = flat.split(" set SET:")[1]
    assert "regrowth.delta_t=100 (steps between mask updates)" in set_keys and "regrowth.seed=0" in set_keys
    assert main(["datasets"]) == 0  # docstrings' Sphinx roles read as plain names
    out = " ".join(capsys.readouterr().out.split())
    assert "without running code from them (CifarUnpickler)" in out and ":class:" not in out


def test_prunelab_list_shows_one_entry_whole(capsys):
    """``prunelab list GROUP NAME``: what the listing cuts (a preset's comment past its first sentence or 240
    characters, a docstring past its first sentence), the keys one per line, and what the option sets."""
    from prunelab.listing import main

    assert main(["criterion", "gmp"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("criterion=gmp\n")
    assert "gives each arm its own schedule (an experiment's schedule keys would also override the at_init " \
           "schedule of rigl and set)." in " ".join(out.split())
    assert "    sets:\n" in out and "\n      schedule:\n        start_step: 300\n" in out
    assert main(["criteria", "snip_momentum"]) == 0  # a registered name: its docstring whole, then its option
    flat = " ".join(capsys.readouterr().out.split())
    assert "registered criterion.criterion_type 'snip_momentum' [Intel Neural Compressor 2.x" in flat
    assert "its README states the two weights the other way round. We follow the code." in flat
    assert "keys: criterion.alpha=0.9 (weight of the history) criterion.beta=1.0" in flat
    assert main(["regrowth", "rigl"]) == 0  # a key's comment with a ";" stays one key
    out = capsys.readouterr().out
    assert "regrowth.t_end=0.75 (the last update is before this step; a float in (0, 1] is a fraction of" in out
    assert main(["criterion", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "criterion='nope': an option (gmp, gradient," in err and "wanda" in err
    assert main(["schedule", "exp"]) == 0  # a registered name that is no option: its own key, not schedule=exp
    assert capsys.readouterr().out.startswith("schedule.sparsity_decay_type=exp\n")
    assert main(["schedule", "nope"]) == 2 and "schedule='nope': an option (at_init, iterative, oneshot) or a " \
        "registered schedule.sparsity_decay_type (agp, cos, cube, exp, linear)" in capsys.readouterr().err
    assert main(["experiment", "dst_fmnist"]) == 0  # the comment as written: its table of arms stays a table
    assert "\n      rigl        random ERK masks at init" in capsys.readouterr().out
    assert main(["trainer", "default"]) == 0  # the trainer's keys, with the comments among them
    out = capsys.readouterr().out
    assert out.startswith("trainer=default\n  config option trainer=default (conf/trainer/default.yaml):\n    The "
                          "training loop:") and "\n      # speed levers (prunelab/training/accel.py)" in out


# --- a criterion's options are typed by its Options dataclass ----------------------------------------------
def test_criterion_options_are_typed_and_closed():
    net = make_net()
    crit = get_criterion({"criterion_type": "snip_momentum", "alpha": 0.5}, {"fc1": net.fc1})
    assert (crit.alpha, crit.beta) == (0.5, 1.0) and crit.options.alpha == 0.5
    with pytest.raises(ConfigError, match=r"^criterion.alpha='abc': a number$"):
        get_criterion({"criterion_type": "snip_momentum", "alpha": "abc"}, {"fc1": net.fc1})
    with pytest.raises(ConfigError, match=r"^criterion.alpah=0.5: a key of criterion snip_momentum \(its options: "
                                          r"alpha, beta, fused\)$"):
        get_criterion({"criterion_type": "snip_momentum", "alpah": 0.5}, {"fc1": net.fc1})
    with pytest.raises(ConfigError, match=r"^criterion.alpha=0.5: a key of criterion magnitude \(it has no options\)"):
        get_criterion({"criterion_type": "magnitude", "alpha": 0.5}, {"fc1": net.fc1})
    with pytest.raises(ConfigError, match=r"^criterion.seed=1.5: an integer$"):
        get_criterion({"criterion_type": "random", "seed": 1.5}, {"fc1": net.fc1})
