"""Fused score updates: one compiled pass over the scores where ``torch.compile`` works, the eager passes otherwise.

A running score such as snip_momentum's ``S <- alpha * S + beta * |W * g|`` takes three passes over memory in eager
PyTorch (``W * g`` into a transient, its absolute value, the history added). Compiled by inductor, the same
expression is one loop per layer that reads W, g and S once and writes S in place: no transient, a third of the
memory traffic. It needs a C++ compiler for the CPU (inductor's C++ backend) or Triton for CUDA;
:func:`compile_unavailable` says why not where it cannot run.

Numbers. Eager CPU and CUDA compute ``a + alpha * b`` as one fused multiply-add, ``fma(b, alpha, a)``. Inductor
does the same on CUDA; on the CPU it writes a multiply and an add, which we let the C++ compiler contract
(``-ffp-contract=fast``, for this kernel only), so that for ``beta = 1`` (the default) the compiled update is
bitwise the eager one. For ``beta != 1`` the compiler may fuse the other product (``|W * g| * beta``) instead,
so results can differ from the eager path by one rounding (<= 1 ulp per update, relative 2**-24), within
``1 / (1 - alpha)`` ulp after any number of updates since alpha < 1 damps the history.
"""
from __future__ import annotations

import logging
import os
import shutil
from typing import Callable, Optional

import torch
from torch import Tensor

log = logging.getLogger("prunelab")


def compile_unavailable(device: torch.device | str) -> Optional[str]:
    """Why ``torch.compile`` (inductor) cannot compile for ``device`` here, or None when it can."""
    kind = torch.device(device).type
    try:
        import torch._dynamo as dynamo

        if not dynamo.is_dynamo_supported():
            return "torch.compile does not support this Python version"
    except Exception as exc:  # a broken install
        return f"torch.compile is unavailable ({type(exc).__name__})"
    if kind == "cpu":
        cxx = os.environ.get("CXX", "g++")
        return None if shutil.which(cxx) else f"no C++ compiler for inductor's CPU backend ({cxx} not found; set CXX)"
    if kind == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (inductor's CUDA backend needs it)"
    return f"no inductor backend for {kind} here"


def _momentum_body(s: list[Tensor], w: list[Tensor], g: list[Tensor], alpha: float, beta: float) -> None:
    for si, wi, gi in zip(s, w, g):
        fresh = torch.abs(wi * gi)
        if beta != 1.0:
            fresh = fresh * beta
        si.copy_(torch.add(fresh, si, alpha=alpha))


_KERNELS: dict[str, Callable[..., None]] = {}


def momentum_kernel() -> Callable[[list[Tensor], list[Tensor], list[Tensor], float, float], None]:
    """``S <- alpha * S + beta * |W * g|`` for lists of layers, compiled (lazily: the first call compiles)."""
    if "momentum" not in _KERNELS:
        _KERNELS["momentum"] = torch.compile(
            _momentum_body, fullgraph=True, dynamic=False,
            options={"cpp.enable_floating_point_contract_flag": "fast"})
    return _KERNELS["momentum"]


class FusedSwitch:
    """Decides, once per device, whether a criterion uses its compiled update: ``mode`` True (where compile works,
    else the eager path with the reason logged), False (never) or None (auto: on CUDA, where kernel launches
    dominate the eager passes; off on the CPU, where compiling costs tens of seconds, more than a default run,
    and saves a few microseconds per step). A compile that fails falls back to the eager path, once, logged."""

    def __init__(self, mode: Optional[bool], name: str) -> None:
        self.mode, self.name = mode, name
        self._decided: dict[str, bool] = {}

    def use(self, device: torch.device) -> bool:
        key = str(device)
        if key not in self._decided:
            self._decided[key] = self._decide(device)
        return self._decided[key]

    def _decide(self, device: torch.device) -> bool:
        if self.mode is False or (self.mode is None and device.type != "cuda"):
            return False
        reason = compile_unavailable(device)
        if reason is not None:
            if self.mode:
                log.warning("prunelab: criterion.fused=true: %s uses its eager update (%s)", self.name, reason)
            return False
        return True

    def failed(self, device: torch.device, exc: BaseException) -> None:
        """The compiled update raised: use the eager one on ``device`` from now on."""
        self._decided[str(device)] = False
        log.warning("prunelab: %s: the fused score update failed to compile (%s: %s); using the eager update",
                    self.name, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
