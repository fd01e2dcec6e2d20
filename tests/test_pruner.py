"""Pruner: the five hooks with real optimizers, exact sparsity, checkpoints, config errors, reporting."""
from __future__ import annotations

import copy
import io
import math

import pytest
import torch
import torch.nn.functional as F_
from omegaconf import OmegaConf
from torch import nn

from prunelab.criteria import get_criterion
from prunelab.errors import ConfigError
from prunelab.sparsity.patterns import Pattern
from prunelab.pruner import Pruner
from prunelab.schedule import Schedule

CRITERIA = ["magnitude", "gradient", "snip", "snip_momentum", "random"]
TRAINING = ["taylor", "movement"]  # wave 2, scored during training (lamp needs a global ranking: toy test only)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)  # 128 weights
        self.fc2 = nn.Linear(16, 16)  # 256 weights
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 8, 3, padding=1)  # [8, 36] in the 2-D view
        self.bn = nn.BatchNorm2d(8)  # 1-D weight: not a candidate
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)  # [8, 72]
        self.emb = nn.Embedding(10, 4)  # 2-D weight, op type not pruned
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.head(x.mean((2, 3)))


def batches(n_steps, seed=123):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 8, generator=g), torch.randint(0, 4, (16,), generator=g)) for _ in range(n_steps)]


def conv_batches(n_steps, seed=7):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(4, 4, 6, 6, generator=g), torch.randint(0, 3, (4,), generator=g)) for _ in range(n_steps)]


def make_mlp(seed=0):
    torch.manual_seed(seed)
    return MLP()


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)


def train(model, pruner, opt, data, first_step=0, check=None, begin=True, end=True):
    if begin:
        pruner.on_train_begin()
    for i, (x, y) in enumerate(data):
        step = first_step + i
        pruner.on_step_begin(step)
        opt.zero_grad(set_to_none=True)
        F_.cross_entropy(model(x), y).backward()
        pruner.on_before_optimizer_step()
        opt.step()
        if check is not None:
            check("after_opt", step)
        pruner.on_after_optimizer_step()
        if check is not None:
            check("after_hook", step)
    if end:
        pruner.on_train_end()


def masked_are_zero(pruner):
    return all(bool((w[~pruner.masks[n]] == 0).all()) for n, w in zip(pruner.names, pruner._weights))


# --- masked weights stay exactly zero under SGD(momentum, weight decay) and AdamW ---
@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_masked_weights_exactly_zero(opt_name):
    model = make_mlp()
    opt = sgd(model) if opt_name == "sgd" else torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    pruner = Pruner(model, "magnitude", "1x1",
                    Schedule(target_sparsity=0.6, start_step=1, end_step=5, pruning_frequency=2), head="head")
    revived = []

    def check(where, step):
        if where == "after_opt":
            # the optimizer alone moves pruned weights (momentum / Adam moments): the hook must undo it
            revived.append(any(bool((w[~pruner.masks[n]] != 0).any())
                               for n, w in zip(pruner.names, pruner._weights)))
        else:
            assert masked_are_zero(pruner), step

    train(model, pruner, opt, batches(10), check=check)
    assert any(revived)
    assert masked_are_zero(pruner)
    assert pruner.sparsity()["zeros"] == math.floor(0.6 * 384)
    # on_train_end re-applies the masks too
    with torch.no_grad():
        model.fc1.weight.add_(1.0)
    pruner.on_train_end()
    assert masked_are_zero(pruner)
    assert all(m.dtype == torch.bool for m in pruner.masks.values())


# --- a toy model reaches the target exactly with every criterion ---
@pytest.mark.parametrize("criterion", CRITERIA + TRAINING + ["lamp"])
@pytest.mark.parametrize("target", [0.7, 0.55])
def test_toy_model_reaches_target_exactly(criterion, target):
    model = make_mlp()
    opt = sgd(model)
    sch = Schedule(target_sparsity=target, start_step=2, end_step=8, pruning_frequency=2, sparsity_decay_type="exp")
    pruner = Pruner(model, {"criterion_type": criterion}, "1x1", sch, head="head")
    seen = {}

    def check(where, step):
        if where == "after_hook" and sch.is_pruning_step(step):
            seen[step] = sum(int((~m).sum()) for m in pruner.masks.values())

    train(model, pruner, opt, batches(12), check=check)
    numel = 128 + 256
    want = math.floor(target * numel)
    zeros = sum(int((w == 0).sum()) for w in (model.fc1.weight, model.fc2.weight))
    assert zeros == want
    assert sum(int((~m).sum()) for m in pruner.masks.values()) == want
    assert pruner.sparsity()["zeros"] == want and pruner.sparsity()["total"] == numel
    assert int((model.head.weight == 0).sum()) == 0  # the head is not pruned
    # every pruning step pruned floor(target(step) * numel)
    assert seen == {s: math.floor(round(sch.target(s) * numel, 6)) for s in sch.steps}
    assert pruner.target == pytest.approx(target)


@pytest.mark.parametrize("criterion", CRITERIA + TRAINING)
@pytest.mark.parametrize("pattern, scope", [("2:4", "global"), ("4x1", "local"), ("channel", "global")])
def test_conv_model_patterns(criterion, pattern, scope):
    torch.manual_seed(1)
    model = ConvNet()
    opt = sgd(model)
    sch = Schedule(target_sparsity=0.5, start_step=1, end_step=3)
    pruner = Pruner(model, criterion, {"type": pattern, "scope": scope}, sch, head="head")
    assert pruner.names == ["conv1", "conv2"]

    pruner.on_train_begin()
    for step, (x, y) in enumerate(conv_batches(5)):
        pruner.on_step_begin(step)
        opt.zero_grad(set_to_none=True)
        F_.cross_entropy(model(x), y).backward()
        pruner.on_before_optimizer_step()
        opt.step()
        pruner.on_after_optimizer_step()
    pruner.on_train_end()
    assert masked_are_zero(pruner)
    counts = {n: int((~m).sum()) for n, m in pruner.masks.items()}
    if pattern == "2:4":  # 2:4 at 0.5: every group has exactly 2 of 4 left
        assert counts == {"conv1": 144, "conv2": 288}
    elif pattern == "4x1":  # local: each layer half its blocks
        assert counts == {"conv1": 144, "conv2": 288}
    else:  # channel, global: 8 of 16 output channels
        chans = {n: int((~m.flatten(1).any(1)).sum()) for n, m in pruner.masks.items()}
        assert sum(chans.values()) == 8
        assert counts == {"conv1": 36 * chans["conv1"], "conv2": 72 * chans["conv2"]}


# --- one-shot ---
def test_one_shot_prunes_once():
    model = make_mlp()
    opt = sgd(model)
    pruner = Pruner(model, "magnitude", "1x1", {"target_sparsity": 0.5, "start_step": 3, "end_step": 3},
                    head="head")
    pruned_steps, sparsity = [], {}

    def check(where, step):
        if where == "after_hook":
            if pruner.pruned_at_step:
                pruned_steps.append(step)
            sparsity[step] = sum(int((~m).sum()) for m in pruner.masks.values())

    train(model, pruner, opt, batches(7), check=check)
    assert pruned_steps == [3]
    assert sparsity == {0: 0, 1: 0, 2: 0, 3: 192, 4: 192, 5: 192, 6: 192}


def test_first_step_targets_s0():
    model = make_mlp()
    opt = sgd(model)
    sch = Schedule(target_sparsity=0.75, start_step=0, end_step=4, pruning_frequency=2,
                   sparsity_decay_type="linear", initial_sparsity=0.25)
    pruner = Pruner(model, "magnitude", "1x1", sch, head="head")
    counts = {}

    def check(where, step):
        if where == "after_hook":
            counts[step] = sum(int((~m).sum()) for m in pruner.masks.values())

    train(model, pruner, opt, batches(6), check=check)
    # 0.25, 0.5, 0.75 of 384
    assert counts == {0: 96, 1: 96, 2: 192, 3: 192, 4: 288, 5: 288}


def test_gradient_criteria_start_at_step_0_without_crash():
    for name in ("gradient", "snip", "snip_momentum"):
        model = make_mlp()
        pruner = Pruner(model, name, "1x1", Schedule(target_sparsity=0.5, start_step=0, end_step=2), head="head")
        train(model, pruner, sgd(model), batches(4))
        assert sum(int((~m).sum()) for m in pruner.masks.values()) == 192


# --- magnitude uses the weights at on_step_begin of the pruning step; snip the scores of step t-1 ---
def test_pruning_step_uses_scores_of_the_right_moment():
    model = make_mlp()
    opt = sgd(model)
    pruner = Pruner(model, "snip", "1x1", Schedule(target_sparsity=0.5, start_step=2, end_step=2), head="head")
    data = batches(3)
    pruner.on_train_begin()
    expected = None
    for step, (x, y) in enumerate(data):
        if step == 2:
            saved = {n: s.clone() for n, s in pruner.criterion.scores.items()}
        pruner.on_step_begin(step)
        if step == 2:
            expected = Pattern("1x1").masks(saved, 0.5)
            for n in pruner.names:
                assert torch.equal(pruner.masks[n], expected[n])
        opt.zero_grad(set_to_none=True)
        F_.cross_entropy(model(x), y).backward()
        if step == 1:
            snip = {n: (getattr(model, n).weight * getattr(model, n).weight.grad).abs() for n in pruner.names}
        pruner.on_before_optimizer_step()
        if step == 1:
            for n in pruner.names:
                assert torch.equal(pruner.criterion.scores[n], snip[n])
        opt.step()
        pruner.on_after_optimizer_step()
    assert expected is not None


# --- checkpoints: stop mid-schedule, restore, continue exactly ---
SCHED = dict(target_sparsity=0.8, start_step=2, end_step=10, pruning_frequency=2, sparsity_decay_type="cos")


def roundtrip(obj, via):
    if via == "deepcopy":
        return copy.deepcopy(obj)
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def build(criterion, seed=0):
    model = make_mlp(seed)
    opt = sgd(model)
    pruner = Pruner(model, criterion, "1x1", Schedule(**SCHED), head="head")
    return model, opt, pruner


@pytest.mark.parametrize("criterion", ["snip_momentum", "snip", "magnitude", *TRAINING])
@pytest.mark.parametrize("stop_after", [4, 5, 7])  # 4: a pruning step; 5, 7: the step before one
@pytest.mark.parametrize("via", ["deepcopy", "bytesio"])
def test_resume_mid_schedule_is_exact(criterion, stop_after, via):
    data = batches(14)
    ref_model, ref_opt, ref_pruner = build(criterion)
    train(ref_model, ref_pruner, ref_opt, data)

    model, opt, pruner = build(criterion)
    train(model, pruner, opt, data[: stop_after + 1], end=False)
    ckpt = roundtrip({"model": model.state_dict(), "opt": opt.state_dict(), "pruner": pruner.state_dict()}, via)
    del model, opt, pruner

    model2, opt2, pruner2 = build(criterion, seed=99)  # different init: everything must come from the checkpoint
    model2.load_state_dict(ckpt["model"])
    opt2.load_state_dict(ckpt["opt"])
    pruner2.load_state_dict(ckpt["pruner"])
    assert pruner2.step == stop_after
    train(model2, pruner2, opt2, data[stop_after + 1:], first_step=stop_after + 1)

    for (n, p), (_, q) in zip(ref_model.named_parameters(), model2.named_parameters()):
        assert torch.equal(p, q), n
    for n in ref_pruner.names:
        assert torch.equal(ref_pruner.masks[n], pruner2.masks[n]), n
        assert torch.equal(ref_pruner.criterion.scores[n], pruner2.criterion.scores[n]), n
    assert ref_pruner.target == pruner2.target
    assert sum(int((~m).sum()) for m in pruner2.masks.values()) == math.floor(0.8 * 384)


def test_resume_without_criterion_state_would_differ():
    """The momentum history matters: dropping it changes the result (so the test above has teeth)."""
    data = batches(14)
    ref_model, ref_opt, ref_pruner = build("snip_momentum")
    train(ref_model, ref_pruner, ref_opt, data)
    model, opt, pruner = build("snip_momentum")
    train(model, pruner, opt, data[:6], end=False)
    state = pruner.state_dict()
    assert set(state["criterion"]["scores"]) == {"fc1", "fc2"}
    state["criterion"] = {}
    model2, opt2, pruner2 = build("snip_momentum")
    model2.load_state_dict(model.state_dict())
    opt2.load_state_dict(opt.state_dict())
    pruner2.load_state_dict(state)
    train(model2, pruner2, opt2, data[6:], first_step=6)
    assert not all(torch.equal(ref_pruner.criterion.scores[n], pruner2.criterion.scores[n]) for n in ref_pruner.names)


def test_load_state_dict_rejects_other_layers_or_criterion():
    _, _, p = build("snip")
    state = p.state_dict()
    _, _, other = build("magnitude")
    with pytest.raises(ConfigError) as e:
        other.load_state_dict(state)
    assert "criterion_type" in str(e.value) and "\n" not in str(e.value)
    bad = dict(state, masks={"fc1": state["masks"]["fc1"]})
    with pytest.raises(ConfigError) as e:
        p.load_state_dict(bad)
    assert "masks" in str(e.value)


# --- config errors: one line, naming key and value ---
def err(fn):
    with pytest.raises(ConfigError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("name", ["gradient", "snip", "snip_momentum"])
def test_gradient_criterion_needs_end_step(name):
    msg = err(lambda: Pruner(make_mlp(), name, "1x1", Schedule(target_sparsity=0.5), head="head"))
    assert msg.startswith("schedule.end_step=0: ") and name in msg and "end_step >= 1" in msg
    # magnitude and random can prune at step 0
    for ok in ("magnitude", "random"):
        Pruner(make_mlp(), ok, "1x1", Schedule(target_sparsity=0.5), head="head")


def test_gradient_criterion_initial_sparsity_at_step_0():
    msg = err(lambda: Pruner(make_mlp(), "snip", "1x1",
                             Schedule(target_sparsity=0.5, end_step=4, initial_sparsity=0.2), head="head"))
    assert "schedule.start_step" in msg


@pytest.mark.parametrize(
    "schedule, key, value",
    [
        ({"target_sparsity": 1.0}, "schedule.target_sparsity", "1.0"),
        ({"target_sparsity": -0.1}, "schedule.target_sparsity", "-0.1"),
        ({"start_step": 6, "end_step": 2}, "schedule.start_step", "6"),
        ({"end_step": 5, "pruning_frequency": 0}, "schedule.pruning_frequency", "0"),
    ],
)
def test_schedule_errors_through_pruner(schedule, key, value):
    msg = err(lambda: Pruner(make_mlp(), "magnitude", "1x1", OmegaConf.create(schedule), head="head"))
    assert msg.startswith(f"{key}={value}: ")


@pytest.mark.parametrize("bad", ["3x", "4:2", "0x1", "2:2", "abc"])
def test_malformed_pattern_through_pruner(bad):
    msg = err(lambda: Pruner(make_mlp(), "magnitude", {"type": bad}, {"target_sparsity": 0.5}))
    assert msg.startswith(f"pattern.type={bad!r}: ")
    msg = err(lambda: Pruner(make_mlp(), "magnitude", bad, {"target_sparsity": 0.5}))
    assert "pattern.type" in msg and repr(bad) in msg


def test_min_above_max_through_pruner():
    msg = err(lambda: Pruner(make_mlp(), "magnitude",
                             {"type": "1x1", "min_sparsity_ratio_per_op": 0.7, "max_sparsity_ratio_per_op": 0.5},
                             {"target_sparsity": 0.5}))
    assert "pattern.min_sparsity_ratio_per_op" in msg and "0.7" in msg and "0.5" in msg


@pytest.mark.parametrize("pattern, target, limit", [("2:4", 0.6, "0.5"), ("1x1", 0.99, "0.98"),
                                                    ({"type": "4x1", "max_sparsity_ratio_per_op": 0.9}, 0.95, "0.9")])
def test_target_above_pattern_max(pattern, target, limit):
    msg = err(lambda: Pruner(make_mlp(), "magnitude", pattern, {"target_sparsity": target}, head="head"))
    assert msg.startswith(f"schedule.target_sparsity={target}: ")
    assert limit in msg
    Pruner(make_mlp(), "magnitude", pattern, {"target_sparsity": float(limit)}, head="head")  # the limit itself is fine


@pytest.mark.parametrize("kw, key, glob", [({"include": ["fc9*"]}, "prune.include", "fc9*"),
                                           ({"exclude": ["conv*"]}, "prune.exclude", "conv*"),
                                           ({"include": ["fc*", "nothing"]}, "prune.include", "nothing")])
def test_globs_matching_no_layer(kw, key, glob):
    msg = err(lambda: Pruner(make_mlp(), "magnitude", "1x1", {"target_sparsity": 0.5}, **kw))
    assert msg.startswith(f"{key}={glob!r}: ")
    assert "fc1" in msg  # says which layers there are


def test_include_exclude_select():
    p = Pruner(make_mlp(), "magnitude", "1x1", {"target_sparsity": 0.5}, include=["fc*"], exclude=["fc2"])
    assert p.names == ["fc1"]
    info = {li.name: li for li in p.layers()}
    assert "exclude" in info["fc2"].reason and "include" in info["head"].reason


def test_unknown_criterion_through_pruner():
    msg = err(lambda: Pruner(make_mlp(), "nope", "1x1", {"target_sparsity": 0.5}))
    assert msg.startswith("criterion.criterion_type='nope': ") and "snip_momentum" in msg


# --- reporting ---
def test_layers_describe_repr_and_head():
    pruner = Pruner(ConvNet(), "snip_momentum", "4x1", {"target_sparsity": 0.5, "end_step": 4}, head="head")
    info = {li.name: li for li in pruner.layers()}
    assert list(info) == ["conv1", "conv2", "emb", "head"]  # bn has a 1-D weight: not a candidate
    assert info["conv1"].pruned and info["conv2"].pruned
    assert info["conv1"].shape == (8, 4, 3, 3) and info["conv1"].numel == 288
    assert not info["head"].pruned and "head" in info["head"].reason
    assert not info["emb"].pruned and "Embedding" in info["emb"].reason
    assert pruner.names == ["conv1", "conv2"]
    text = pruner.describe()
    lines = text.splitlines()
    assert len(lines) == 1 + 4
    row = {ln.split()[0]: ln for ln in lines[1:]}
    assert row["conv1"].rstrip().endswith("pruned") and row["conv2"].rstrip().endswith("pruned")
    assert "skipped" in row["head"] and "head" in row["head"].split("skipped", 1)[1]
    assert "skipped" in row["emb"]
    r = repr(pruner)
    assert "snip_momentum" in r and "conv1" in r and "conv2" in r and "head (" in r and "4x1" in r
    # with no head given the head is pruned too
    p2 = Pruner(ConvNet(), "magnitude", "1x1", {"target_sparsity": 0.5})
    assert p2.names == ["conv1", "conv2", "head"]


def test_mapping_of_tensors_and_built_criterion():
    torch.manual_seed(0)
    w = {"a": torch.randn(4, 8, requires_grad=True), "b": torch.randn(8, 4, requires_grad=True)}
    crit = get_criterion({"criterion_type": "magnitude"}, w)
    pruner = Pruner(w, crit, "1x1", {"target_sparsity": 0.25})
    assert pruner.criterion is crit
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    allw = torch.cat([w["a"].detach().abs().flatten(), w["b"].detach().abs().flatten()])
    thr = allw.sort().values[15]  # 16 of 64 go: those below the 17th smallest
    for n in w:
        assert torch.equal(pruner.masks[n], w[n].detach().abs() > thr)
        assert bool((w[n][~pruner.masks[n]] == 0).all())
