"""``trainer.fused_step``: the pruned layers' SGD step, masks and snip_momentum's scores as one compiled pass
(slow-ish: inductor compiles C++ on the CPU, a few seconds per configuration).

The reference is what torch and the eager pruner compute: ``torch.optim.SGD``'s own step, snip_momentum's eager
update and the masks re-applied after the step. Every tensor a run carries (weights, biases, momentum buffers,
scores, masks) must come out bitwise equal, through pruning steps (the masks change), a learning rate that
changes every step, two parameter groups and the first step (no momentum buffers yet: the eager path).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from prunelab.criteria.fused import compile_unavailable
from prunelab.errors import ConfigError
from prunelab.pruner import Pruner
from prunelab.training import fused_step as fs
from prunelab.training.fused_step import FusedStep

pytestmark = pytest.mark.skipif(compile_unavailable("cpu") is not None, reason="inductor cannot compile here")

SCHEDULE = {"target_sparsity": 0.8, "start_step": 0, "end_step": 8, "pruning_frequency": 4}


def _net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3))


def _train(fused: bool, criterion: dict, sgd: dict, steps: int = 12) -> tuple[nn.Module, torch.optim.Optimizer,
                                                                            Pruner, list[bool]]:
    net = _net()
    first, rest = [net[0].weight], [p for n, p in net.named_parameters() if n != "0.weight"]
    opt = torch.optim.SGD([{"params": first, "lr": 0.07}, {"params": rest}], lr=0.05, **sgd)
    pruner = Pruner(net, criterion, "1x1", SCHEDULE, head="4").bind(model=net, optimizer=opt)
    if fused:
        pruner.bind(fused_step=FusedStep(opt, list(pruner.weights)))
    pruner.on_train_begin()
    g = torch.Generator().manual_seed(0)
    took = []
    for step in range(steps):
        for k, group in enumerate(opt.param_groups):  # a learning rate that moves every step, as a schedule's
            group["lr"] = 0.05 * (1 + k) / (1 + 0.3 * step)
        x, y = torch.randn(16, 12, generator=g), torch.randint(0, 3, (16,), generator=g)
        pruner.on_step_begin(step)
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        grads = [p.grad for p in net.parameters()]
        pruner.on_before_optimizer_step()
        took.append(pruner._fused_now)
        opt.step()
        pruner.on_after_optimizer_step()
        assert all(p.grad is g for p, g in zip(net.parameters(), grads))  # the gradients as an eager step leaves them
    return net, opt, pruner, took


def _assert_same(a, b) -> None:
    (net_a, opt_a, pr_a, _), (net_b, opt_b, pr_b, _) = a, b
    for (name, x), y in zip(net_a.state_dict().items(), net_b.state_dict().values()):
        assert torch.equal(x, y), name
    for pa, pb in zip(net_a.parameters(), net_b.parameters()):
        sa, sb = opt_a.state[pa].get("momentum_buffer"), opt_b.state[pb].get("momentum_buffer")
        assert (sa is None) == (sb is None) and (sa is None or torch.equal(sa, sb))
    for n in pr_a.names:
        assert torch.equal(pr_a.masks[n], pr_b.masks[n]), n
        assert torch.equal(pr_a.criterion.scores[n], pr_b.criterion.scores[n]), n


@pytest.mark.parametrize("sgd", [
    {"momentum": 0.9, "weight_decay": 5e-4},
    {"momentum": 0.8, "dampening": 0.1, "weight_decay": 1e-3, "maximize": True},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-4},
    {"momentum": 0.0, "weight_decay": 5e-4},
], ids=["momentum+wd", "dampening+maximize", "nesterov", "no-momentum"])
def test_the_fused_step_is_torch_sgd_and_the_eager_pruner_bitwise(sgd):
    crit = {"criterion_type": "snip_momentum", "alpha": 0.8, "beta": 0.5}
    eager, fused = _train(False, crit, sgd), _train(True, crit, sgd)
    _assert_same(eager, fused)
    took = fused[3]
    # with momentum the first step creates the buffers (eager); every later step was fused, pruning steps included
    assert took == [sgd["momentum"] == 0.0] + [True] * 11
    assert fused[2].sparsity()["overall"] > 0.7


@pytest.mark.parametrize("name", ["snip", "gradient", "taylor", "movement", "magnitude", "random", "lamp"])
def test_every_other_criterion_scores_as_without_the_fused_step(name):
    """The criteria that give no rule: a gradient criterion's hook scores first, on the weights before the step;
    the others score at a step's beginning or never. The step then runs fused (SGD and the masks)."""
    crit = {"criterion_type": name}
    sgd = {"momentum": 0.9, "weight_decay": 5e-4}
    eager, fused = _train(False, crit, sgd), _train(True, crit, sgd)
    _assert_same(eager, fused)
    assert fused[3][1:] == [True] * 11


def test_a_resumed_optimizer_state_is_what_the_next_fused_step_updates():
    """A checkpoint restores new buffer tensors: the step must update those, not the ones it was built with."""
    sgd = {"momentum": 0.9}
    crit = {"criterion_type": "magnitude"}
    net, opt, pruner, _ = _train(True, crit, sgd, steps=6)
    state = copy.deepcopy(opt.state_dict())
    opt.load_state_dict(state)  # new tensors for every buffer
    w = pruner.weights[0]
    buf = opt.state[w]["momentum_buffer"]
    before = buf.clone()
    nn.functional.cross_entropy(net(torch.randn(4, 12)), torch.tensor([0, 1, 2, 0])).backward()
    pruner.on_before_optimizer_step()
    assert pruner._fused_now
    opt.step()
    pruner.on_after_optimizer_step()
    assert opt.state[w]["momentum_buffer"] is buf and not torch.equal(buf, before)


def test_another_optimizer_is_refused_in_one_line():
    net = _net()
    with pytest.raises(ConfigError) as err:
        FusedStep(torch.optim.Adam(net.parameters()), [net[0].weight])
    assert "trainer.fused_step" in str(err.value) and "Adam" in str(err.value)
    assert fs.unsupported(torch.optim.SGD, {"fused": True}) is not None
    assert fs.unsupported(torch.optim.SGD, {"momentum": 0.9}) is None


def _tensors(tree, prefix=""):
    """Every tensor in a checkpoint's tree, by its path."""
    if isinstance(tree, torch.Tensor):
        yield prefix, tree
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from _tensors(v, f"{prefix}/{k}")
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            yield from _tensors(v, f"{prefix}/{i}")


def test_a_run_with_the_fused_step_is_the_run_without_it(tmp_path):
    """The app: snip_momentum on digits, with and without ``trainer.fused_step``: the same checkpoint, tensor by
    tensor (model, optimizer state, masks, scores), the same accuracies, the same fingerprint (so either may resume
    the other, and a sweep hands one's result out for the other)."""
    from appkit import compose, run_inprocess

    from prunelab.rundir import config_fingerprint
    from prunelab.options import config_to_dict

    over = ["criterion=snip_momentum", "logger=none", "trainer.max_steps=40", "trainer.eval_every=20"]
    plain = run_inprocess(over, tmp_path / "plain")
    compiled = set(fs._KERNELS)
    fused = run_inprocess([*over, "trainer.fused_step=true"], tmp_path / "fused")
    assert set(fs._KERNELS) - compiled  # the run took the fused step (compiled for its layers)
    assert fused["test/acc"] == plain["test/acc"] and fused["sparsity/actual"] == plain["sparsity/actual"] > 0.5
    a = dict(_tensors(torch.load(tmp_path / "plain" / "checkpoint.pt", weights_only=False)))
    b = dict(_tensors(torch.load(tmp_path / "fused" / "checkpoint.pt", weights_only=False)))
    assert a.keys() == b.keys() and any("momentum_buffer" in k for k in a) and any("scores" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    cfg = lambda extra: config_to_dict(compose([*over, *extra]))  # noqa: E731
    assert config_fingerprint(cfg(["trainer.fused_step=true"])) == config_fingerprint(cfg([]))


def test_a_step_that_fails_to_compile_leaves_the_run_to_the_eager_step(monkeypatch, caplog):
    """A compiler that breaks mid-run (after the config check passed): one warning, then the eager step, with the
    eager numbers (snip_momentum's scores included: its hook runs after all)."""
    def broken(*args, **kwargs):
        raise RuntimeError("C++ compile error: cc1plus killed\nmore lines")

    monkeypatch.setattr(fs, "compile_graph", broken)
    monkeypatch.setattr(fs, "_KERNELS", {})
    crit = {"criterion_type": "snip_momentum"}
    sgd = {"momentum": 0.9, "weight_decay": 5e-4}
    with caplog.at_level("WARNING", logger="prunelab"):
        fused = _train(True, crit, sgd)
    _assert_same(_train(False, crit, sgd), fused)
    assert fused[3] == [False] * 12
    warned = [r.getMessage() for r in caplog.records if "trainer.fused_step" in r.getMessage()]
    assert len(warned) == 1 and "RuntimeError: C++ compile error: cc1plus killed" in warned[0]


def test_the_time_spent_compiling_is_counted_for_the_loop_to_leave_out(monkeypatch):
    """A compilation (here one made to take at least 0.3 s) is counted in ``compile_s``, which the training loop
    subtracts from the time its samples/s divide by; the steps after it add nothing."""
    import time

    real = fs.compile_graph

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(fs, "compile_graph", slow)
    monkeypatch.setattr(fs, "_KERNELS", {})
    net, opt, pruner, took = _train(True, {"criterion_type": "magnitude"}, {"momentum": 0.9}, steps=4)
    spent = pruner.fused_step.compile_s
    assert took == [False, True, True, True] and spent >= 0.3
    step = pruner.fused_step  # the same operands: no new compilation, nothing added
    x, y = torch.randn(4, 12), torch.tensor([0, 1, 2, 0])
    nn.functional.cross_entropy(net(x), y).backward()
    pruner.on_before_optimizer_step()
    opt.step()
    pruner.on_after_optimizer_step()
    assert step.compile_s == spent


def test_a_gradient_scaler_is_refused_before_the_first_step():
    """fp16 (CUDA only, so its scaler is faked here): a step the scaler skips must not move the pruned weights."""
    from types import SimpleNamespace

    from prunelab.training.callbacks import PruningCallback

    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    pruner = Pruner(net, "magnitude", "1x1", SCHEDULE, head="4")
    loop = SimpleNamespace(model=net, optimizer=opt, calibration=None, precision=SimpleNamespace(scaler=object()))
    with pytest.raises(ConfigError, match="trainer.amp=fp16"):
        PruningCallback(pruner, fused_step=True).on_train_begin(loop)
    loop.precision.scaler = None
    PruningCallback(pruner, fused_step=True).on_train_begin(loop)
    assert pruner.fused_step is not None
