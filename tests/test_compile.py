"""torch.compile paths (slow: inductor compiles C++ on the CPU): snip_momentum's fused score update against the
eager one, and a compiled model under the pruner (masks stay exact zeros, scores as in the eager run)."""
from __future__ import annotations

import pytest
import torch

from prunelab.criteria import get_criterion
from prunelab.criteria.fused import compile_unavailable

from trainkit import train_digits

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(compile_unavailable("cpu") is not None, reason=str(compile_unavailable("cpu")))]
CPU = torch.device("cpu")
SHAPES = [(300, 784), (100, 300), (10, 100), (7,), (16, 3, 3, 3)]  # sizes that leave vector tails


def _pair(alpha: float, beta: float):
    torch.manual_seed(0)
    weights = {f"l{i}": torch.nn.Parameter(torch.randn(s)) for i, s in enumerate(SHAPES)}
    make = lambda fused: get_criterion(  # noqa: E731
        {"criterion_type": "snip_momentum", "alpha": alpha, "beta": beta, "fused": fused}, weights)
    return weights, make("false"), make("true")


@pytest.mark.parametrize("alpha,beta", [(0.9, 1.0), (0.3, 0.7)])
def test_fused_update_gives_the_eager_numbers_bitwise(alpha, beta):
    weights, eager, fused = _pair(alpha, beta)
    ref = {n: torch.zeros(w.shape, dtype=torch.float64) for n, w in weights.items()}
    ptrs = {n: s.data_ptr() for n, s in fused.scores.items()}
    for step in range(6):
        for n, w in weights.items():
            w.grad = torch.randn_like(w) * 10.0 ** -(step % 3)
            ref[n] = alpha * ref[n] + beta * (w.double() * w.grad.double()).abs()  # the definition, in float64
        eager.on_before_optimizer_step()
        fused.on_before_optimizer_step()
        assert fused.fused.use(CPU) and not eager.fused.use(CPU)  # the compiled kernel ran, not a fallback
        for n in weights:
            a, b = eager.scores[n], fused.scores[n]
            assert torch.equal(a, b), (n, step)  # |W*g| (* beta) rounded, then one fused multiply-add, both
            assert torch.allclose(b.double(), ref[n], rtol=1e-5, atol=1e-30), (n, step)
    assert {n: s.data_ptr() for n, s in fused.scores.items()} == ptrs  # in place: no transient, no new storage


def test_a_compiled_model_keeps_its_masks_and_the_eager_scores(tmp_path):
    eager_model, p_eager, _, s_eager = train_digits(tmp_path / "eager", steps=12)
    model, p_comp, probe, s_comp = train_digits(tmp_path / "compiled", steps=12, compile=True)
    # the probe asserted masked weights == 0 exactly before every forward and after every optimizer step
    assert probe.checked == 2 * 12 * len(p_comp.masks) and probe.grad_steps == list(range(12))
    for name in p_eager.masks:
        assert torch.equal(p_eager.masks[name], p_comp.masks[name]), name
        # inductor's fused forward/backward rounds differently from eager kernels: scores agree to ~1e-5
        assert torch.allclose(p_eager.criterion.scores[name], p_comp.criterion.scores[name], rtol=1e-3,
                              atol=1e-6 * float(p_eager.criterion.scores[name].max())), name
    ck = torch.load(tmp_path / "compiled" / "checkpoint.pt", weights_only=True)
    assert ck["model"].keys() == eager_model.state_dict().keys()  # the original module's names
    for k, v in eager_model.state_dict().items():
        assert torch.allclose(v, ck["model"][k], atol=1e-4), k
    assert s_comp["sparsity/actual"] == pytest.approx(s_eager["sparsity/actual"])


def test_compile_composes_with_bf16_and_channels_last(tmp_path):
    """The MLP (a conv net compiles for minutes here; channels-last + bf16 on convs is in test_accel.py)."""
    model, pruner, probe, summary = train_digits(tmp_path, steps=8, compile=True, amp="bf16", channels_last=True)
    assert probe.checked == 2 * 8 * len(pruner.masks) and probe.grad_steps == list(range(8))
    assert summary["sparsity/actual"] == pytest.approx(0.8, abs=1e-3) and summary["val/loss"] < 10
