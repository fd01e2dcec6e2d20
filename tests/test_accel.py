"""The trainer's speed levers: refused with one line where they cannot work (fp16 and cudnn without CUDA, compile
without a compiler), composing where they can (bf16 autocast + channels-last + the streaming path on the CPU),
and the fp16 gradient scaler's contract with the pruner (true gradients for the criteria, skipped steps skip
them). The compiled paths are in test_compile.py (slow)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from prunelab.app import validate
from prunelab.errors import ConfigError
from prunelab.training import accel
from prunelab.training.trainer import TrainerConfig

from appkit import cli, compose
from trainkit import train_digits

REFUSED = [
    (["trainer.amp=fp16"], r"^trainer.amp='fp16': none or bf16 on cpu \(fp16 with a GradScaler needs CUDA\)$"),
    (["trainer.amp=fp32"], r"^trainer.amp='fp32': none, bf16 or fp16$"),
    (["trainer.cudnn_benchmark=true"], r"^trainer.cudnn_benchmark=true: auto or false on cpu \(cudnn needs CUDA\)$"),
    (["trainer.pin_memory=true"], r"^trainer.pin_memory=true: auto or false on cpu \(pinned memory speeds copies"),
    (["trainer.cudnn_benchmark=sometimes"], r"^trainer.cudnn_benchmark='sometimes': auto, true or false$"),
    (["trainer.workers=-1"], r"^trainer.workers=-1: an integer >= 0$"),
    (["trainer.prefetch_factor=0"], r"^trainer.prefetch_factor=0: an integer >= 1$"),
    (["trainer.pin_memory=always"], r"^trainer.pin_memory='always': auto, true or false$"),
    (["dataset=imagefolder"], r"^dataset.num_classes=None: a value for dataset imagefolder, which leaves it to you"),
]


@pytest.mark.parametrize("overrides,message", REFUSED)
def test_levers_that_cannot_work_here_are_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(compose(["trainer.device=cpu", *overrides]))


def test_compile_without_a_compiler_is_refused(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    with pytest.raises(ConfigError, match=r"^trainer.compile=true: false here: no C\+\+ compiler for inductor's CPU "
                                          r"backend \(/nonexistent/g\+\+ not found; set CXX\)$"):
        validate(compose(["trainer.device=cpu", "trainer.compile=true"]))


def test_cudnn_autotuning_is_refused_with_determinism_and_auto_follows_the_device():
    cfg = TrainerConfig(cudnn_benchmark="true", deterministic=True)
    with pytest.raises(ConfigError, match=r"^trainer.cudnn_benchmark=.*with trainer.deterministic=true"):
        accel.check_levers(cfg, torch.device("cuda"))  # the rule, without needing a GPU
    auto = TrainerConfig()
    assert accel.cudnn_benchmark(auto, torch.device("cuda")) is True
    assert accel.cudnn_benchmark(auto, torch.device("cpu")) is False
    assert accel.cudnn_benchmark(TrainerConfig(deterministic=True), torch.device("cuda")) is False


def test_refusal_through_the_cli_exits_2_before_any_file(tmp_path):
    proc = cli(["trainer.amp=fp16", "trainer.device=cpu", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("prunelab: error: trainer.amp='fp16': none or bf16")
    written = {p.name for p in (tmp_path / "run").glob("*")}
    assert not written & {"config.yaml", "summary.json", "metrics.jsonl", "checkpoint.pt", ".hydra"}, written


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_bf16_channels_last_and_streaming_compose_on_cpu(tmp_path):
    plain, p_plain, _, s_plain = train_digits(tmp_path / "a", model="lenet5")
    mixed, p_mixed, probe, s_mixed = train_digits(tmp_path / "b", model="lenet5", amp="bf16", channels_last=True,
                                                  in_memory=False)
    assert probe.checked >= 2 * 16 and probe.grad_steps == list(range(16))  # masked weights 0 at every step
    assert probe.channels_last == {True}  # the conv weights trained in NHWC
    assert s_mixed["sparsity/actual"] == pytest.approx(s_plain["sparsity/actual"], abs=1e-3)
    # bf16 autocast (8-bit mantissas in the matmuls and convs) changed the arithmetic, not the training: the masks
    # nearly agree and the weights both runs keep are close
    w_plain, w_mixed = _weights(plain), _weights(mixed)
    assert any(not torch.equal(w_plain[k], w_mixed[k]) for k in w_plain)
    for name, m in p_plain.masks.items():
        m2 = p_mixed.masks[name]
        assert float((m == m2).float().mean()) > 0.95, name
        both = m & m2
        assert float((w_plain[f"{name}.weight"] - w_mixed[f"{name}.weight"])[both].abs().max()) < 0.02, name
    for name, s in p_plain.criterion.scores.items():
        assert s.dtype == p_mixed.criterion.scores[name].dtype == torch.float32


def test_channels_last_alone_keeps_the_numbers(tmp_path):
    plain, p_plain, _, _ = train_digits(tmp_path / "a", model="lenet5", steps=6)
    nhwc, p_nhwc, _, _ = train_digits(tmp_path / "b", model="lenet5", steps=6, channels_last=True)
    for k, v in _weights(plain).items():
        assert torch.allclose(v, _weights(nhwc)[k], rtol=1e-4, atol=1e-6), k
    for name in p_plain.masks:
        assert torch.equal(p_plain.masks[name], p_nhwc.masks[name]), name


def test_fp16_scaler_hands_true_gradients_and_skips_non_finite_steps():
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
    nn.functional.cross_entropy(model(x), y).backward()
    want = model.weight.grad.clone()
    model.zero_grad()
    prec = accel.Precision("fp16", torch.device("cpu"))  # GradScaler works on the CPU too (autocast aside)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    prec.backward(nn.functional.cross_entropy(model(x), y))
    assert torch.allclose(model.weight.grad, want * 65536.0)  # scaled by the scaler's initial 2**16
    assert prec.unscale(opt) is True
    assert torch.equal(model.weight.grad, want * 65536.0 / 65536.0)  # a power of two: unscaling is exact
    before = model.weight.detach().clone()
    prec.step(opt)
    assert not torch.equal(model.weight, before)
    model.zero_grad()
    prec.backward(nn.functional.cross_entropy(model(x), y))
    model.weight.grad[0, 0] = float("inf")
    assert prec.unscale(opt) is False
    before = model.weight.detach().clone()
    prec.step(opt)
    assert torch.equal(model.weight, before)  # skipped
    assert prec.state_dict()["scale"] == 65536.0 / 2  # and the scale backed off


def test_a_skipped_fp16_step_does_not_reach_the_criteria(tmp_path, monkeypatch):
    calls = iter([True, True, False, True] + [True] * 20)
    monkeypatch.setattr(accel.Precision, "unscale", lambda self, opt: next(calls))
    _, _, probe, _ = train_digits(tmp_path, steps=6)
    assert probe.grad_steps == [0, 1, 3, 4, 5]
