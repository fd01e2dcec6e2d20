"""SNIP's connection sensitivity |W * g| during training: per step (snip) and as a running sum (snip_momentum)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Hashable

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..options import tristate
from .base import PruningCriterion, ScoreHook, register_criterion
from .fused import FusedSwitch, momentum_score, momentum_update


@register_criterion("snip")
class SnipCriterion(PruningCriterion):
    """SNIP connection sensitivity: ``score = |W * dL/dW|``, computed in ``on_before_optimizer_step``.

    Lee, Ajanthan & Torr 2019, "SNIP: Single-shot Network Pruning based on Connection Sensitivity"
    (https://arxiv.org/abs/1810.02340), applied at every pruning step of a schedule as Intel Neural Compressor
    does (``snip_init`` is SNIP as its paper uses it, once at initialization). A pruned weight (W = 0) scores 0,
    so it stays pruned.
    """

    paper = "Lee, Ajanthan & Torr 2019, SNIP: Single-shot Network Pruning based on Connection Sensitivity"
    needs_gradients = True
    score_hook = ScoreHook.BEFORE_OPTIMIZER_STEP

    @torch.no_grad()
    def on_before_optimizer_step(self) -> None:
        s, w, g = self._grads()
        if s:
            torch._foreach_copy_(s, w)
            torch._foreach_mul_(s, g)
            torch._foreach_abs_(s)


@register_criterion("snip_momentum")
class SnipMomentumCriterion(PruningCriterion):
    """SNIP with momentum: ``S <- alpha * S + beta * |W * dL/dW|``, S starting at 0, every step.

    Intel Neural Compressor's snip_momentum (the criterion of its "Prune Once for All"-style recipes). Its code
    computes ``alpha * S + beta * |W * grad|`` with ``alpha = 0.9`` (the history) and ``beta = 1.0`` (the new
    term); its README states the two weights the other way round. We follow the code. S is state: it is updated
    at every step until the masks are final and saved with the checkpoint.

    ``fused`` (auto | true | false) runs the update as one compiled pass (:mod:`prunelab.criteria.fused`) instead
    of three eager ones; auto: on CUDA only. The numbers are the eager path's (bitwise for beta = 1).
    """

    paper = "Intel Neural Compressor 2.x, criterion_type=snip_momentum (after Lee et al. 2019, SNIP)"
    needs_gradients = True
    stateful = True
    score_hook = ScoreHook.BEFORE_OPTIMIZER_STEP

    @dataclass
    class Options:
        alpha: float = 0.9  #: weight of the history
        beta: float = 1.0  #: weight of the current |W * g|
        fused: str = "auto"  #: one compiled pass for the update: auto (on CUDA), true, false

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        super().__init__(modules, config)
        self.alpha, self.beta = float(self.options.alpha), float(self.options.beta)
        for key, val in (("alpha", self.alpha), ("beta", self.beta)):
            if not val >= 0.0:
                raise ConfigError(f"criterion.{key}", val, "a number >= 0")
        self.fused = FusedSwitch(tristate("criterion.fused", self.options.fused), self.name)
        self._rule = ("snip_momentum", self.alpha, self.beta), partial(momentum_score, alpha=self.alpha,
                                                                       beta=self.beta)

    def fused_rule(self) -> tuple[Hashable, Callable[[Tensor, Tensor, Tensor], Tensor]]:
        """The update below as one expression, for ``trainer.fused_step``."""
        return self._rule

    @torch.no_grad()
    def on_before_optimizer_step(self) -> None:
        s, w, g = self._grads()
        if not s:
            return
        if s[0].dtype == w[0].dtype == g[0].dtype == torch.float32 and self.fused.use(s[0].device):
            try:
                momentum_update(s, w, g, self.alpha, self.beta)
                return
            except Exception as exc:  # compilation failed (before anything was written): the eager path
                self.fused.failed(s[0].device, exc)
        # S <- alpha * S + beta * |W * g| in three passes: the new term in a transient tensor, the history added
        # into it, and the scores' storage swapped to it (the persistent state stays one float per weight)
        fresh = torch._foreach_mul(w, g)
        torch._foreach_abs_(fresh)
        if fresh[0].dtype != torch.float32:
            fresh = [f.float() for f in fresh]
        if self.beta != 1.0:
            torch._foreach_mul_(fresh, self.beta)
        torch._foreach_add_(fresh, s, alpha=self.alpha)
        for score, new in zip(s, fresh):
            score.set_(new)
