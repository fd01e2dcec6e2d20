"""First-order Taylor importance of a unit, squared per mini-batch and averaged between pruning steps."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .base import PruningCriterion, ScoreHook, register_criterion


@register_criterion("taylor")
class TaylorCriterion(PruningCriterion):
    """Taylor: a unit's score is ``(sum over the unit's weights of W * dL/dW) ** 2``, squared per mini-batch and
    averaged over the steps since the last pruning step, computed in ``on_before_optimizer_step``.

    Molchanov, Mallya, Tyree, Frosio & Kautz 2019, "Importance Estimation for Neural Network Pruning"
    (https://arxiv.org/abs/1906.10771), eq. 8: ``I_S = (sum_{s in S} g_s w_s) ** 2``, the squared first-order
    estimate of the loss change when the group S is removed; reference NVlabs/Taylor_pruning, ``pruning_engine.py``
    (``add_criteria`` per batch, ``compute_saliency`` averages and resets).

    * **Unit**: the weights the pattern removes together (:meth:`Pattern.unit_sums`, told by the pruner through
      :meth:`use_pattern`): an output channel / neuron for ``channel``, an NxM block for block patterns, and the
      weight itself for ``1x1`` and ``N:M`` (element level: ``(w * g) ** 2``, which ranks like snip only for a
      single batch). Every weight carries its unit's score, so the pattern's ``block_reduce=mean`` (the default)
      or ``max`` ranks the units by exactly that score (``sum`` multiplies it by the unit's size).
    * **Order**: square per batch, then average (not the reverse): ``S = (1 / T) sum_t (sum_s w_s g_s)_t ** 2``
      over the T steps since the last pruning step (since step 0 before the first one). The running mean is
      updated in place, ``S <- S + (x_t - S) / t``; a pruning step (or a mask update) starts a new average
      (:meth:`on_pruning_step`).
    * **Momentum** (``momentum``, default 0): the reference's ``pruning_momentum``: from the second pruning step on,
      the score used is ``momentum * previous + (1 - momentum) * average``. The paper's authors found it unhelpful
      ("momentum turned to be useless", the reference's comment); off by default, as the issue asks.
    * **State**: the running mean, the number of steps in it and (with momentum) the last score used: saved with the
      checkpoint. Updated at every step until the masks are final.

    Deviations from the reference: the reference's ``Taylor_weight`` method (0) sums the *squared* per-weight
    terms of a unit, ``sum_s (w_s g_s) ** 2``; its best method (22) puts a gate after each BatchNorm and scores the
    gate, ``(gate * dL/dgate) ** 2`` per batch. Ours is eq. 8 on the layer's own weights, which equals a gate placed
    right after the layer, before its bias and any BatchNorm (we do not add gates to the model). The reference
    prunes a fixed number of neurons per pruning step; our schedule sets the count. Its optional per-layer L2
    normalisation (off by default there) is not built.
    """

    paper = "Molchanov et al. 2019, Importance Estimation for Neural Network Pruning (first-order Taylor)"
    needs_gradients = True
    stateful = True
    score_hook = ScoreHook.BEFORE_OPTIMIZER_STEP

    @dataclass
    class Options:
        momentum: float = 0.0  #: weight of the previous pruning step's score (the reference's pruning_momentum)

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        super().__init__(modules, config)
        self.momentum = float(self.options.momentum)
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError("criterion.momentum", self.momentum, "a number in [0, 1) (0: no momentum)")
        self.count = 0  # batches in the running mean
        self.previous: list[Tensor] | None = None  # momentum: the score the last pruning step used

    @torch.no_grad()
    def on_before_optimizer_step(self) -> None:
        have = [i for i, w in enumerate(self._weights) if w.grad is not None]
        if not have:
            return
        s = [self._score_list[i] for i in have]
        fresh = torch._foreach_mul([self._weights[i] for i in have], [self._weights[i].grad for i in have])
        if fresh[0].dtype != torch.float32:
            fresh = [f.float() for f in fresh]
        if self.pattern is not None and not self.pattern.elementwise:  # one sum per unit (broadcast views)
            units = [self.pattern.unit_sums(f) for f in fresh]
            fresh = torch._foreach_mul(units, units)  # squared per batch, before any averaging
        else:
            torch._foreach_mul_(fresh, fresh)
        if self.previous is not None:  # keeps the mean equal to momentum * previous + (1 - momentum) * mean(x)
            torch._foreach_mul_(fresh, 1.0 - self.momentum)
            torch._foreach_add_(fresh, [self.previous[i] for i in have], alpha=self.momentum)
        self.count += 1
        torch._foreach_lerp_(s, fresh, 1.0 / self.count)  # S <- S + (x - S) / n: the running mean of n batches

    def on_pruning_step(self) -> None:
        """The scores were used: the next batch starts a new average (it overwrites the tensors: weight 1/1)."""
        self.count = 0
        if self.momentum > 0.0:
            self.previous = [x.clone() for x in self._score_list]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["count"] = self.count
        if self.previous is not None:
            state["previous"] = {n: p.clone() for n, p in zip(self.names, self.previous)}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.count = int(state.get("count", 0))
        previous = state.get("previous")
        self.previous = [previous[n].clone() for n in self.names] if previous else None
