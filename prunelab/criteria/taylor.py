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
      over the T steps since the last pruning step (since step 0 before the first one); a pruning step (or a mask
      update) starts a new average (:meth:`on_pruning_step`). Between the steps that read the scores they hold the
      running sum (one fused pass per step, ``S += x_t``); :meth:`prepare_scores` divides by T when the pruner is
      about to read them (pruning, mask-update and score-logging steps), so whatever reads them sees the mean.
    * **Momentum** (``momentum``, default 0): the reference's ``pruning_momentum``: from the second pruning step on,
      the score used is ``momentum * previous + (1 - momentum) * average``. The paper's authors found it unhelpful
      ("momentum turned to be useless", the reference's comment); off by default, as the issue asks.
    * **State**: the running sum (or mean), the number of steps in it and (with momentum) the last score used:
      saved with the checkpoint. Updated at every step until the masks are final.

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
        self.count = 0  # batches in the current average
        self.is_mean = True  # False while the scores hold the running sum (between the steps that read them)
        self.previous: list[Tensor] | None = None  # momentum: the score the last pruning step used

    @torch.no_grad()
    def on_before_optimizer_step(self) -> None:
        have = [i for i, w in enumerate(self._weights) if w.grad is not None]
        if not have:
            return
        s = [self._score_list[i] for i in have]
        wg = torch._foreach_mul([self._weights[i] for i in have], [self._weights[i].grad for i in have])
        if wg[0].dtype != torch.float32:
            wg = [x.float() for x in wg]
        if self.pattern is not None and not self.pattern.elementwise:
            wg = [self.pattern.unit_sums(x) for x in wg]  # one sum per unit (broadcast over the unit)
        if self.count == 0:  # a new average: the last one's scores were used
            torch._foreach_zero_(s)
        elif self.is_mean:  # read (e.g. logged) mid-window: back to the running sum
            torch._foreach_mul_(s, float(self.count))
        self.is_mean = False
        if self.previous is None:
            torch._foreach_addcmul_(s, wg, wg)  # + (w g)^2: squared per batch, then summed
        else:  # momentum: the mean becomes momentum * previous + (1 - momentum) * mean
            torch._foreach_addcmul_(s, wg, wg, value=1.0 - self.momentum)
            torch._foreach_add_(s, [self.previous[i] for i in have], alpha=self.momentum)
        self.count += 1

    @torch.no_grad()
    def prepare_scores(self) -> None:
        """The running sum becomes the mean (the scores the paper defines) before anything reads it."""
        if not self.is_mean and self.count > 0:
            torch._foreach_div_(self._score_list, float(self.count))
        self.is_mean = True

    def on_pruning_step(self) -> None:
        """The scores were used: the next batch starts a new average."""
        self.prepare_scores()
        self.count = 0
        if self.momentum > 0.0:
            self.previous = [x.clone() for x in self._score_list]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(count=self.count, is_mean=self.is_mean)
        if self.previous is not None:
            state["previous"] = {n: p.clone() for n, p in zip(self.names, self.previous)}
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.count = int(state.get("count", 0))
        self.is_mean = bool(state.get("is_mean", True))
        previous = state.get("previous")
        self.previous = [previous[n].clone() for n in self.names] if previous else None
