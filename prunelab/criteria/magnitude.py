"""Magnitude: the oldest criterion and the baseline every other one is measured against."""
from __future__ import annotations

import torch

from .base import PruningCriterion, ScoreHook, register_criterion


@register_criterion("magnitude")
class MagnitudeCriterion(PruningCriterion):
    """Magnitude: ``score = |W|``, computed in ``on_step_begin``.

    Han et al. 2015, "Learning both Weights and Connections for Efficient Neural Networks". A pruned weight
    (W = 0) scores 0, so it stays pruned.
    """

    paper = "Han et al. 2015, Learning both Weights and Connections for Efficient Neural Networks"
    score_hook = ScoreHook.STEP_BEGIN

    @torch.no_grad()
    def on_step_begin(self) -> None:
        torch._foreach_copy_(self._score_list, self._weights)
        torch._foreach_abs_(self._score_list)
