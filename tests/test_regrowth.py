"""Dynamic sparse training: SET and RigL as mask updaters (drop the smallest |W|, grow random / largest dense
gradient) at constant per-layer sparsity, with grown weights at 0 and their optimizer state zeroed."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from appkit import cli, compose, faulty, metrics, ranks_output, summary, torchrun
from prunelab.errors import ConfigError
from prunelab.pruner import Pruner
from prunelab.regrowth import (MaskChange, RigLUpdater, SETUpdater, build_updater, drop_and_grow, grow_highest,
                               random_subset)
from prunelab.schedule import Schedule

T, F = True, False


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# --- one layer, by hand (each on the numpy path and in the compiled kernel) ---------------------------------------
PATHS = pytest.mark.parametrize("compiled", [False, True], ids=["numpy", "kernel"])


@PATHS
def test_drop_and_grow_on_a_hand_made_layer(compiled):
    mask = torch.tensor([[T, T, T, F], [T, F, T, F], [T, T, F, F]])  # 7 kept of 12
    w = torch.tensor([[0.5, -0.1, 0.3, 0.0], [0.1, 0.0, -0.9, 0.0], [0.2, 0.1, 0.0, 0.0]])
    g = torch.tensor([[9.0, 0.0, 0.0, 4.0], [0.0, 4.0, 0.0, 1.0], [0.0, 0.0, 4.0, 2.0]])
    # fraction 0.5: n = floor(0.5 * 7) = 3 dropped. Kept |W|: 0.5 0.1 0.3 / 0.1 0.9 / 0.2 0.1 -> the three smallest
    # are the 0.1s at (0,1), (1,0), (2,1) (ties: by position, all three go). Candidates to grow: every position not
    # kept after the drop, the dropped ones included; |g| 4.0 at (0,3), (1,1), (2,2) (a tie of three for three
    # places: all grow) beat 2.0, 1.0 and the zeros of the dropped positions.
    change = drop_and_grow(mask, w.abs(), grow_highest(g.abs()), 0.5, compiled=compiled)
    new = change.mask(mask)
    want = torch.tensor([[T, F, T, T], [F, T, T, F], [T, F, T, F]])
    assert torch.equal(new, want)
    assert int(new.sum()) == int(mask.sum())
    # by position: (0,1) (1,0) (2,1) off, (0,3) (1,1) (2,2) on; kept: every True of the new mask
    assert (change.off.tolist(), change.on.tolist()) == ([1, 4, 9], [3, 5, 10])
    assert change.kept.tolist() == new.reshape(-1).nonzero().flatten().tolist()


@PATHS
def test_ties_drop_the_earlier_and_grow_the_later_position(compiled):
    mask = torch.tensor([T, T, T, F, F, F])
    w = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])  # all kept weights tie: the first goes
    g = torch.tensor([0.0, 0.0, 0.0, 5.0, 5.0, 5.0])  # all candidates tie: the last grows
    new = drop_and_grow(mask, w, grow_highest(g), 0.34, compiled=compiled).mask(mask)  # floor(0.34 * 3) = 1
    assert new.tolist() == [F, T, T, F, F, T]


@PATHS
def test_a_dropped_weight_can_be_grown_again(compiled):
    """The grow candidates include the weights just dropped (jaxpruner and rigl do the same): then nothing flips."""
    mask = torch.tensor([T, T, F, F])
    w = torch.tensor([0.1, 0.9, 0.0, 0.0])
    g = torch.tensor([7.0, 0.0, 1.0, 2.0])  # the dropped weight has the largest gradient
    change = drop_and_grow(mask, w, grow_highest(g), 0.5, compiled=compiled)
    assert torch.equal(change.mask(mask), mask)
    assert change.off.numel() == change.on.numel() == 0 and change.kept.tolist() == [0, 1]


def _layer(rng: np.random.Generator, size: int, kind: str) -> tuple[torch.Tensor, ...]:
    """A random layer (mask, weights, gradient): normal values, small integers (ties everywhere), or normal values
    with NaN, inf and -0.0 sprinkled in."""
    if kind == "ties":
        w, g = (rng.integers(-3, 4, size).astype(np.float32) for _ in range(2))
    else:
        w, g = (rng.standard_normal(size).astype(np.float32) for _ in range(2))
    if kind == "special":  # NaNs of several payloads and signs: every NaN is one value, above inf
        for x, v in ((w, np.nan), (g, np.nan), (g, np.inf), (g, -np.inf), (w, -0.0), (g, -0.0)):
            x[rng.random(size) < 0.03] = v
        for x in (w, g):
            at = rng.random(size) < 0.03
            x.view(np.uint32)[at] = rng.integers(0x7F800001, 0x80000000, int(at.sum())) | (rng.integers(0, 2) << 31)
    mask = rng.random(size) < rng.uniform(0.02, 0.6)
    mask[rng.integers(size)] = True
    return torch.from_numpy(mask), torch.from_numpy(w), torch.from_numpy(g)


@pytest.mark.parametrize("kind", ["normal", "ties", "special"])
def test_the_compiled_update_is_the_numpy_update(kind):
    """The kernels (prunelab.sparsity.kernels) give the numpy path's sets exactly, RigL's and SET's, on layers below
    and above the size where RigL's growth samples a bound for the tail, with ties, NaN, inf and -0.0; the mask is
    left as it was."""
    from prunelab.regrowth import grow_at_random
    from prunelab.sparsity import kernels

    assert kernels.OFF is None, kernels.OFF  # numba is a dependency: the kernels must run here
    rng = np.random.default_rng(["normal", "ties", "special"].index(kind))
    for trial, size in enumerate([1, 7, 300, 5000, 20000, 70000, 70000]):
        mask, w, g = _layer(rng, size, kind)
        before = mask.clone()
        fraction = float(rng.uniform(0.05, 1.0))
        n = math.floor(round(fraction * int(mask.sum()), 6))
        kept = mask.nonzero().flatten().numpy()
        assert grow_highest(g).fused(kernels.Operands(mask, w), kept, n) is not None or n == 0  # the kernel ran
        rules = {"rigl": lambda: grow_highest(g),
                 "set": lambda: grow_at_random(size, torch.Generator().manual_seed(trial))}
        for name, rule in rules.items():
            want = drop_and_grow(mask, w, rule(), fraction, compiled=False)
            got = drop_and_grow(mask, w, rule(), fraction, compiled=True)
            for a, b, what in zip((want.kept, want.off, want.on), (got.kept, got.off, got.on), ("kept", "off", "on")):
                assert torch.equal(a, b), (name, size, what)
            assert torch.equal(mask.view(torch.uint8), before.view(torch.uint8))  # every byte 0 or 1 again
            # in place: the same sets, the mask left updated, the weights off and on zeroed, the optimizer state
            # (here two tensors, as Adam's) zeroed where on, nothing else written
            mask2, w2, state = mask.clone(), w.clone(), [g + 1.0, w.neg()]
            before_state = [t.clone() for t in state]
            done = drop_and_grow(mask2, w2, rule(), fraction, compiled=True, apply=state)
            assert done.applied and torch.equal(done.on, want.on) and torch.equal(done.off, want.off), (name, size)
            assert torch.equal(mask2, want.mask(mask)), (name, size)
            changed, on = torch.zeros(size, dtype=torch.bool), torch.zeros(size, dtype=torch.bool)
            changed[want.off], changed[want.on], on[want.on] = True, True, True
            for now, then in ((w2, w), *zip(state, before_state)):
                zeroed = changed if now is w2 else on
                assert torch.all(now[zeroed].view(torch.int32) == 0), (name, size)  # +0.0, whatever was there
                assert torch.equal(now[~zeroed].view(torch.int32), then[~zeroed].view(torch.int32)), (name, size)


def test_the_compiled_first_distinct_is_the_numpy_one():
    from prunelab.regrowth import first_distinct
    from prunelab.sparsity import kernels

    rng = np.random.default_rng(0)
    for c, n in ((212_000, 7_000), (70_000, 30_000)):  # a layer's candidates: the bitset spans thousands of words
        draws = rng.integers(0, c, 3 * n)
        assert np.array_equal(first_distinct(draws, n), kernels.first_distinct(draws, n))
    for _ in range(300):
        c, m = int(rng.integers(1, 400)), int(rng.integers(1, 300))
        draws, n = rng.integers(0, c, m), int(rng.integers(1, m + 1))
        want, got = first_distinct(draws, n), kernels.first_distinct(draws, n)
        assert (want is None and got.size == 0) or np.array_equal(want, got), (c, draws, n)


def test_tensors_the_kernels_do_not_take_go_the_numpy_way():
    """float64 weights or gradient, a non-contiguous gradient, optimizer state that is float64 or more tensors than
    a kernel zeroes: no kernel; float64 gets the same sets by numpy."""
    from prunelab.sparsity import kernels

    mask, w, g = _layer(np.random.default_rng(5), 4000, "normal")
    want = drop_and_grow(mask, w, grow_highest(g), 0.3)
    assert kernels.unavailable(mask, w, g) is None
    kept = mask.nonzero().flatten().numpy()
    for w2, g2 in ((w.double(), g), (w, g.double()), (w, g.reshape(100, 40).t())):
        assert kernels.unavailable(mask, w2, g2) is not None
        ops = kernels.operands(mask, w2)
        assert ops is None or grow_highest(g2).fused(ops, kept, 10) is None
    for state in ([w.double()], [w.clone() for _ in range(kernels.STATES + 1)]):  # optimizer state it cannot zero
        assert kernels.operands(mask, w, state) is None
        change = drop_and_grow(mask.clone(), w.clone(), grow_highest(g), 0.3, apply=state)
        assert not change.applied and torch.equal(change.on, want.on)  # the numpy path, which writes nothing
    got = drop_and_grow(mask, w.double(), grow_highest(g.double()), 0.3)
    assert torch.equal(want.kept, got.kept) and torch.equal(want.on, got.on)


def test_training_begins_with_the_kernels_compiled_and_says_when_that_took_long(monkeypatch, caplog):
    """The pruner's on_train_begin has the updater compile its kernels (not the first update, mid-training), and a
    compile that took seconds is logged once (here the clock is made to read 9 s per call)."""
    import logging

    from prunelab import regrowth
    from prunelab.sparsity import kernels

    calls = []
    monkeypatch.setattr(kernels, "warm", lambda: calls.append(1))
    clock = iter(range(0, 100, 9))
    monkeypatch.setattr(regrowth.time, "perf_counter", lambda: float(next(clock)))
    torch.manual_seed(0)
    pruner = Pruner(Net(), "random", "1x1", Schedule(0.5, 0, 0), head="head",
                    updater=RigLUpdater(delta_t=5, t_end=50))
    with caplog.at_level(logging.INFO, logger="prunelab"):
        pruner.on_train_begin()
    assert calls == [1]
    assert "compiled the drop-and-grow kernels in 9.0 s" in caplog.text


def test_cosine_drop_fraction_at_start_middle_and_end():
    u = RigLUpdater(delta_t=10, t_end=1000, drop_fraction=0.3)
    assert u.drop_fraction(0) == pytest.approx(0.3)
    assert u.drop_fraction(500) == pytest.approx(0.15)
    assert u.drop_fraction(1000) == pytest.approx(0.0, abs=1e-12)
    assert u.drop_fraction(250) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    s = SETUpdater(delta_t=10, t_end=1000, drop_fraction=0.3)
    assert s.drop_fraction(0) == s.drop_fraction(999) == 0.3  # SET: constant zeta
    assert [t for t in range(0, 1001) if u.is_update_step(t)] == list(range(10, 1000, 10))
    assert u.last_step == 990


def test_bad_regrowth_options_are_one_line():
    with pytest.raises(ConfigError, match=r"^regrowth.delta_t=0"):
        build_updater({"name": "rigl", "delta_t": 0}, 100, 0)
    with pytest.raises(ConfigError, match=r"^regrowth.drop_fraction=1.5"):
        build_updater({"name": "set", "drop_fraction": 1.5}, 100, 0)
    with pytest.raises(ConfigError, match=r"^regrowth.t_end=5: a step after the initial pruning"):
        build_updater({"name": "rigl", "t_end": 5}, 100, 10)
    with pytest.raises(ConfigError, match=r"^regrowth.delta=1: a key of regrowth rigl"):
        build_updater({"name": "rigl", "delta": 1}, 100, 0)
    with pytest.raises(ConfigError, match=r"^regrowth.name='bogus'"):
        build_updater({"name": "bogus"}, 100, 0)
    assert build_updater({"name": "none"}, 100, 0) is None
    assert build_updater({"name": "rigl", "t_end": 0.5, "delta_t": 10}, 200, 0).t_end == 100  # fractions of training


@pytest.mark.parametrize("key, value, allowed", [
    ("drop_fraction", "abc", "a number"),
    ("delta_t", 2.5, "an integer"),
    ("t_end", None, "a fraction of training in (0, 1], or a step (an integer)"),
    ("t_end", "abc", "a fraction of training in (0, 1], or a step (an integer)"),
    ("t_end", True, "a fraction of training in (0, 1], or a step (an integer)"),
    ("t_end", 400.0, "a step <= the training length (300 steps)"),  # a whole float is a step, and too late
    ("seed", "abc", "an integer"),
    ("seed", 1.5, "an integer"),
    ("seed", -1, "an integer in [0, 4294967295]"),
])
def test_regrowth_values_of_the_wrong_type_are_one_line(key, value, allowed):
    """Every regrowth key is typed (``DropAndGrow.Options``): a wrong value is a one-line error naming it, not a
    traceback from inside the updater."""
    with pytest.raises(ConfigError) as err:
        build_updater({"name": "set", "delta_t": 10, key: value}, 300, 0)
    assert str(err.value).startswith(f"regrowth.{key}=") and allowed in str(err.value), str(err.value)


def test_a_split_below_the_layer_is_refused_with_regrowth():
    """Drop-and-grow keeps each layer's count, not each row's: per_row would hold only until the first update."""
    from prunelab.pruner import build_pattern
    from prunelab.regrowth import check_regrowth
    from prunelab.sparsity.distribution import resolve_distribution

    one, at_init = build_pattern("1x1"), Schedule(0.9, start_step=0, end_step=0)
    rigl = {"name": "rigl", "delta_t": 100, "t_end": 0.75}
    for name in ("global", "uniform", "erk", "er"):
        check_regrowth(rigl, one, at_init, 300, resolve_distribution(name, None))
    with pytest.raises(ConfigError, match=r"^distribution='per_row': a per-layer split .* with regrowth=rigl"):
        check_regrowth(rigl, one, at_init, 300, resolve_distribution("per_row", None))
    check_regrowth({"name": "none"}, one, at_init, 300, resolve_distribution("per_row", None))  # no regrowth: fine


def test_a_whole_float_t_end_is_a_step():
    assert build_updater({"name": "rigl", "delta_t": 10, "t_end": 200.0}, 300, 0).t_end == 200
    assert build_updater({"name": "rigl", "delta_t": 10, "t_end": 1.0}, 300, 0).t_end == 300  # 1.0: all of it
    assert build_updater({"name": "set", "delta_t": 10}, 300, 0, seed=7).seed == 7  # the run's seed by default


def test_a_regrowth_that_would_never_update_is_refused():
    """A run named after its updater (rigl-s0.90-...) that never drops and grows is refused before any work: t_end
    neither a fraction nor a step, past the training, or no update step left between the initial pruning and t_end
    (delta_t too long, or a schedule override that moves the initial pruning past t_end)."""
    from prunelab.pruner import build_pattern
    from prunelab.regrowth import check_regrowth

    one, at_init = build_pattern("1x1"), Schedule(0.9, start_step=0, end_step=0)
    rigl = {"name": "rigl", "delta_t": 100, "t_end": 0.75}
    check_regrowth(rigl, one, at_init, 300)  # updates at 100 and 200
    check_regrowth({**rigl, "t_end": 300}, one, at_init, 300)  # t_end as the last step
    with pytest.raises(ConfigError, match=r"^regrowth.t_end=1.5: a fraction of training in \(0, 1\], or a step"):
        check_regrowth({**rigl, "t_end": 1.5}, one, at_init, 300)
    with pytest.raises(ConfigError, match=r"^regrowth.t_end=5000: a step <= the training length \(300 steps\)"):
        check_regrowth({**rigl, "t_end": 5000}, one, at_init, 300)
    with pytest.raises(ConfigError, match=r"^regrowth.delta_t=1000: a period that leaves an update .*\(step 225\)"):
        check_regrowth({**rigl, "delta_t": 1000}, one, at_init, 300)
    with pytest.raises(ConfigError, match=r"^regrowth.delta_t=100: .*schedule.end_step = 400.*\(step 450\)"):
        check_regrowth(rigl, one, Schedule(0.9, start_step=100, end_step=400, pruning_frequency=100), 600)
    # the same checks where the length is known only with the data (trainer.epochs): when the app builds it
    with pytest.raises(ConfigError, match=r"^regrowth.delta_t=100: a period .*\(step 15\)"):
        build_updater(rigl, 20, 0)
    with pytest.raises(ConfigError, match=r"^regrowth.seed=5: a key of regrowth rigl \(its options: delta_t, t_end, "
                                          r"drop_fraction, decay\)$"):  # rigl grows by gradient: no seed
        build_updater({**rigl, "seed": 5}, 300, 0)
    assert build_updater({"name": "set", "seed": 5}, 300, 0).seed == 5


def test_a_misspelled_key_lists_the_keys_of_the_chosen_option():
    """A key the chosen option (of a group without a fixed schema) lacks: the one line lists the keys it has."""
    import re

    from hydra import compose, initialize_config_module

    from prunelab.config import as_config_error

    cases = [(["criterion=rigl", "regrowth.delta_tt=50"],
              r"^regrowth.delta_tt='50': a key of the chosen regrowth \(rigl\): name, delta_t, t_end, drop_fraction, "
              r"decay \(did you mean delta_t\?\)$"),
             (["dataset.memory_bugdet_gb=1"], r"^dataset.memory_bugdet_gb='1': a key of the chosen dataset \(digits\): "
              r"name, input_shape, .*, in_memory, memory_budget_gb \(did you mean memory_budget_gb\?\)$"),  # the
             # options it declares but leaves unset too
             (["dataset.memory_budget_gb=1"], r"^dataset.memory_budget_gb='1': an option of dataset digits that "
              r"conf/dataset/digits.yaml does not set: add it with \+dataset.memory_budget_gb=1$"),
             (["criterion=magnitude", "criterion.alpha=0.5"],  # a criterion is named by its criterion_type
              r"^criterion.alpha='0.5': a key of the chosen criterion \(magnitude\): criterion_type, ablation, "
              r"label$")]
    with initialize_config_module("prunelab.conf", version_base=None):
        for overrides, want in cases:
            with pytest.raises(Exception) as info:
                compose("config", overrides=overrides)
            assert re.match(want, str(as_config_error(info.value))), str(as_config_error(info.value))


# --- through the pruner ------------------------------------------------------------------------------------------
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(10, 24), nn.Linear(24, 16), nn.Linear(16, 3)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def batches(n, seed=2):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(12, 10, generator=g), torch.randint(0, 3, (12,), generator=g)) for _ in range(n)]


@PATHS
@pytest.mark.parametrize("kind", ["rigl", "set"])
@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_updates_keep_per_layer_counts_and_reset_grown_state(kind, opt_name, compiled, monkeypatch):
    """Both ways an update is written: by the kernel that found it (compiled) and by the pruner (numpy path)."""
    from prunelab.sparsity import kernels

    if not compiled:
        monkeypatch.setattr(kernels, "OFF", "the numpy path")
    torch.manual_seed(0)
    model = Net()
    updater = (RigLUpdater if kind == "rigl" else SETUpdater)(delta_t=3, t_end=18, drop_fraction=0.5, seed=4)
    pruner = Pruner(model, "random", "1x1", Schedule(0.8, start_step=0, end_step=0), distribution="uniform",
                    head="head", updater=updater)
    opt = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if opt_name == "sgd"
           else torch.optim.Adam(model.parameters(), lr=0.01))
    pruner.bind(optimizer=opt)
    pruner.on_train_begin()
    kept0 = None
    updates = 0
    moved = dict.fromkeys(pruner.names, 0)
    for step, (x, y) in enumerate(batches(20)):
        if step == 7:  # new optimizer state tensors (a state reloaded): the next update zeroes those
            opt.load_state_dict(copy.deepcopy(opt.state_dict()))
        if step == 10:  # the weights moved to new memory: the next update writes there
            with torch.no_grad():
                for n in pruner.names:
                    getattr(model, n).weight.data = getattr(model, n).weight.data.clone()
        old = {n: m.clone() for n, m in pruner.masks.items()}
        grads = {n: getattr(model, n).weight.grad for n in pruner.names}
        state = {n: {k: v.clone() for k, v in opt.state[getattr(model, n).weight].items() if v.dim() > 0}
                 for n in pruner.names} if step else {}
        if updater.is_update_step(step):  # pruned weights revived (a user's own update could): grown restart at 0
            with torch.no_grad():
                for n in pruner.names:
                    getattr(model, n).weight[~old[n]] = 1e-3  # small: it reaches this step's forward
        weights = {n: getattr(model, n).weight.detach().clone() for n in pruner.names}
        pruner.on_step_begin(step)
        kept = {n: int(m.sum()) for n, m in pruner.masks.items()}
        kept0 = kept0 or kept
        assert kept == kept0, step  # per-layer sparsity constant across updates
        if updater.is_update_step(step):
            updates += 1
            for n in pruner.names:
                w, new = getattr(model, n).weight, pruner.masks[n]
                grown, dropped = new & ~old[n], old[n] & ~new
                # an update may leave a layer as it was (RigL: the weights it drops have the largest gradients)
                assert int(grown.sum()) == int(dropped.sum())
                moved[n] += int(grown.sum())
                assert pruner.changed[n] == int(grown.sum() + dropped.sum())
                # grown restart at 0, dropped are 0 at once; a revived weight that stays pruned is zeroed by the
                # step's mask apply (checked below), as at any step: the update writes only what it changes
                assert torch.all(w[grown] == 0) and torch.all(w[dropped] == 0)
                assert torch.equal(w[new & old[n]], weights[n][new & old[n]])  # the kept ones untouched
                if kind == "rigl" and grown.any():  # every grown weight's gradient is >= any not grown
                    g = grads[n].abs()
                    assert g[grown].min() >= g[~new].max()
                for key, v in opt.state[w].items():
                    if v.dim() == 0:
                        continue
                    assert torch.all(v[grown] == 0), (n, key)
                    assert torch.equal(v[~grown], state[n][key][~grown]), (n, key)
        else:
            assert all(torch.equal(pruner.masks[n], old[n]) for n in pruner.names) or step == 0
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        pruner.on_before_optimizer_step()
        opt.step()
        pruner.on_after_optimizer_step()
        for n, m in pruner.masks.items():  # every pruned weight 0 again after the step, the revived ones too
            assert torch.all(getattr(model, n).weight[~m] == 0), (step, n)
    assert updates == 5  # steps 3, 6, 9, 12, 15
    assert all(moved.values()), moved  # every layer's mask moved at some update


def test_set_growth_is_seeded_by_seed_and_step():
    torch.manual_seed(0)
    a, b = (SETUpdater(delta_t=5, t_end=50, seed=s) for s in (1, 1))
    pa = Pruner(Net(), "random", "1x1", Schedule(0.5, 0, 0), head="head", updater=a)
    pa.on_step_begin(0)
    first, again, other_step = a.changes(pa, 5), b.changes(pa, 5), a.changes(pa, 10)
    assert all(torch.equal(first[n].on, again[n].on) and torch.equal(first[n].off, again[n].off) for n in first)
    assert not torch.equal(first["fc1"].on, other_step["fc1"].on)
    assert not torch.equal(first["fc1"].on, SETUpdater(delta_t=5, t_end=50, seed=2).changes(pa, 5)["fc1"].on)


@pytest.mark.parametrize("c, n", [(5, 2), (5, 4), (6, 3)])
def test_random_subsets_are_uniform_over_all_subsets(c, n):
    """SET grows a uniformly random subset of the candidates: every n-subset of range(c) about equally often
    (chi-square over all of them), each drawn without repeats and ascending. n > c / 2 takes the complement path."""
    from itertools import combinations

    from scipy.stats import chisquare

    g = torch.Generator().manual_seed(0)
    draws = [tuple(random_subset(c, n, g).tolist()) for _ in range(4000)]
    subsets = list(combinations(range(c), n))
    assert all(d in subsets for d in draws)  # n distinct, ascending, in range
    counts = [draws.count(s) for s in subsets]
    assert chisquare(counts).pvalue > 1e-3, counts


def test_set_grows_only_candidates_and_every_candidate_alike():
    """The ranks of the candidates map to the positions not kept after the drop (the just-dropped included): none
    grown is kept, and over many updates every candidate position grows about equally often."""
    from prunelab.regrowth import grow_at_random

    still = np.array([0, 1, 4, 5, 9])  # kept after the drop, of 12
    candidates = [2, 3, 6, 7, 8, 10, 11]
    g = torch.Generator().manual_seed(3)
    grow = grow_at_random(12, g)
    counts = dict.fromkeys(candidates, 0)
    for _ in range(2000):
        grown = grow(still, 2).tolist()
        assert len(set(grown)) == 2 and set(grown) <= set(candidates) and grown == sorted(grown)
        for p in grown:
            counts[p] += 1
    assert all(abs(v - 2000 * 2 / 7) < 60 for v in counts.values()), counts  # 571 each, sd ~19


def test_mask_change_between_two_masks():
    old = torch.tensor([[T, T, F], [F, T, F]])
    new = torch.tensor([[T, F, F], [T, T, T]])
    c = MaskChange.between(old, new)
    assert (c.kept.tolist(), c.off.tolist(), c.on.tolist()) == ([0, 3, 4, 5], [1], [3, 5])
    assert torch.equal(c.mask(old), new)


def test_kept_positions_are_reused_only_while_the_mask_is_not_written():
    """The pruner keeps each layer's kept positions from its last update by position, and finds them anew once
    anything has written the mask (here: one entry flipped in place, and a checkpoint loaded)."""
    torch.manual_seed(0)
    updater = RigLUpdater(delta_t=2, t_end=50, seed=0)
    model = Net()
    pruner = Pruner(model, "random", "1x1", Schedule(0.7, 0, 0), head="head", updater=updater)
    pruner.on_train_begin()
    for step, (x, y) in enumerate(batches(3)):
        pruner.on_step_begin(step)
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.on_before_optimizer_step()
        pruner.on_after_optimizer_step()
    assert pruner.changed["fc1"] > 0  # step 2 was an update

    def found(name):
        return pruner.masks[name].reshape(-1).nonzero().flatten().tolist()

    kept = pruner.kept_positions("fc1")
    assert pruner.kept_positions("fc1") is kept and kept.tolist() == found("fc1")
    pruner.masks["fc1"][0, 0] ^= True
    assert pruner.kept_positions("fc1").tolist() == found("fc1") != kept.tolist()
    state = pruner.state_dict()
    state["masks"] = {n: m.clone() for n, m in state["masks"].items()}
    state["masks"]["fc2"][1, 2] ^= True
    before = pruner.kept_positions("fc2")
    pruner.load_state_dict(state)
    assert pruner.kept_positions("fc2").tolist() == found("fc2") != before.tolist()


# --- through the app ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["rigl", "set"])
def test_rigl_and_set_options_choose_at_init_erk_and_their_regrowth_unless_overridden(option):
    cfg = compose([f"criterion={option}"])
    end = Schedule.from_config(cfg.schedule, total_steps=cfg.trainer.max_steps).end_step
    assert (end, cfg.distribution.name, cfg.regrowth.name) == (0, "erk", option)  # at_init
    from prunelab.app import run_name

    assert run_name(cfg) == f"{option}-s0.90-seed0"  # named after the updater, not its random initial masks
    cfg = compose([f"criterion={option}", "distribution=uniform", "schedule=iterative"])
    end = Schedule.from_config(cfg.schedule, total_steps=cfg.trainer.max_steps).end_step
    assert end > 0 and (cfg.distribution.name, cfg.regrowth.name) == ("uniform", option)


RUN = ["logger=none", "trainer.progress=none", "trainer.max_steps=120", "trainer.eval_every=40",
       "regrowth.delta_t=20", "trainer.log_every=5", "trainer.checkpoint_every=25", "trainer.deterministic=true"]


@pytest.mark.slow
@pytest.mark.parametrize("option", ["rigl", "set"])
def test_rigl_and_set_end_to_end(tmp_path, option):
    run_dir = tmp_path / option
    proc = cli([f"criterion={option}", *RUN, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = metrics(run_dir)
    updates = [r for r in rows if "masks/changed/fc1" in r]
    assert [r["step"] for r in updates] == [0, 20, 40, 60, 80]  # the initial pruning, then until t_end = 90
    assert all(r["masks/changed"] > 0 for r in updates)
    assert len({round(r["sparsity/masked"], 12) for r in updates}) == 1  # constant sparsity
    for layer in ("fc1", "fc2"):  # per layer, in the log: the masks' share constant, the zeros' share not
        assert len({r[f"sparsity/masked/{layer}"] for r in updates}) == 1, layer
    assert len({r["sparsity/fc1"] for r in updates}) > 1  # grown weights start at 0
    s = summary(run_dir)
    assert s["sparsity/masked"] == pytest.approx(0.9, abs=1e-3)
    targets = s["sparsity/layer_targets"]  # ERK: fc2 (256x128) sparser than fc1 (64x256); as many weights kept
    assert targets["fc2"] > 0.9 > targets["fc1"]




def test_a_sweep_sets_a_regrowth_key_of_the_swept_criteria(tmp_path):
    """``-m criterion=rigl,set regrowth.delta_t=20``: Hydra composes a sweep's own config without the swept
    options (on regrowth=none, which has no delta_t); prunelab force-adds the key there, and every job takes it. A
    job whose regrowth is none (static_erk) is refused with one line naming it, before anything is written."""
    base = ["-m", "regrowth.delta_t=20", "trainer.max_steps=60", "logger=none", "trainer.progress=none",
            "trainer.eval_every=30"]
    done = cli([*base, "criterion=rigl,set", f"hydra.sweep.dir={tmp_path / 'ok'}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    runs = sorted(p.parent for p in (tmp_path / "ok").glob("*/summary.json"))
    assert [r.name.split("-")[0] for r in runs] == ["rigl", "set"]
    for run in runs:
        assert compose_saved(run)["regrowth"]["delta_t"] == 20
        assert [m["step"] for m in metrics(run) if "masks/changed" in m] == [0, 20, 40]  # masks at 0, then updates
    refused = cli([*base, "criterion=rigl,static_erk", f"hydra.sweep.dir={tmp_path / 'no'}"], cwd=tmp_path)
    assert refused.returncode == 2
    line = refused.stderr.strip()
    assert len(line.splitlines()) == 1 and line.startswith("prunelab: error: regrowth.delta_t=20: no regrowth key "
                                                           "with regrowth=none") and "criterion=static_erk" in line
    assert " regrowth.delta_t=20" in line and "++" not in line  # the job's overrides as typed
    assert not (tmp_path / "no").exists()
    typo = cli([*base, "criterion=rigl,set", "hydra.sweep.dirr=elsewhere"], cwd=tmp_path)  # Hydra's keys: no force-add
    assert typo.returncode == 2 and typo.stderr.strip().startswith("prunelab: error: hydra.sweep.dirr='elsewhere'")
    # a preset that sweeps, without -m (Hydra takes the command for one run when it cannot compose such a key):
    # still a sweep whose every job takes both keys (t_end 1.5 is refused in the first job that has a regrowth)
    preset = cli(["+experiment=dst_fmnist", "regrowth.delta_t=20", "regrowth.t_end=1.5",
                  f"hydra.sweep.dir={tmp_path / 'preset'}"], cwd=tmp_path)
    line = preset.stderr.strip()
    assert preset.returncode == 2 and len(line.splitlines()) == 1, line
    assert line.startswith("prunelab: error: regrowth.t_end=1.5: a fraction of training") and \
        "(sweep job #1: seed=0 schedule.target_sparsity=0.9 criterion=rigl +experiment=dst_fmnist " \
        "regrowth.delta_t=20 regrowth.t_end=1.5)" in line, line
    assert not (tmp_path / "preset").exists()
    # not a sweep: the one run's config lacks the key, as before
    single = cli(["regrowth.delta_t=20"], cwd=tmp_path)
    assert single.returncode == 2 and single.stderr.strip() == \
        "prunelab: error: regrowth.delta_t='20': a key of the chosen regrowth (none): name"


def compose_saved(run):
    import yaml

    return yaml.safe_load((run / "config.yaml").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("every, kill, saved", [(25, 57, 49), (20, 65, 59)])
def test_resume_across_an_update_step_is_bitwise(tmp_path, every, kill, saved):
    """Killed after the checkpoint of step 49 and before the update of step 60, or after the checkpoint of step 59,
    right before that update (which ranks step 59's gradient: the checkpoint carries it); resumed, it must end
    exactly as a run never interrupted (weights, masks, metrics)."""
    args = ["criterion=rigl", *RUN, f"trainer.checkpoint_every={every}"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert cli([*args, f"hydra.run.dir={ref}"], cwd=tmp_path).returncode == 0
    killed = cli([*args, f"hydra.run.dir={run}"], cwd=tmp_path, **faulty(f"kill@{kill}"))  # SIGKILL
    assert killed.returncode == -9, killed.stderr[-2000:]
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == saved
    assert ("grads" in state["pruner"]) == ((saved + 1) % 20 == 0)  # only right before an update
    resumed = cli([*args, f"hydra.run.dir={run}", "trainer.resume=true"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    a, b = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (ref, run))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["pruner"]["masks"][k], b["pruner"]["masks"][k]) for k in a["pruner"]["masks"])
    assert (ref / "metrics.jsonl").read_bytes() == (run / "metrics.jsonl").read_bytes()


@pytest.mark.slow
def test_two_ranks_keep_identical_masks(tmp_path):
    """Under DDP the grow scores come from the all-reduced gradient and SET's from a shared seed: check_masks
    all-reduces a mask checksum at every update and fails the run on any difference between the ranks."""
    for option in ("rigl", "set"):
        run_dir = tmp_path / option
        proc = torchrun([f"criterion={option}", *RUN, "trainer.max_steps=60", "trainer.check_masks=true",
                         "trainer.batch_size=32", f"hydra.run.dir={run_dir}"], cwd=tmp_path, timeout=600)
        assert proc.returncode == 0, ranks_output(proc)
        assert [r["step"] for r in metrics(run_dir) if "masks/changed/fc1" in r] == [0, 20, 40]
