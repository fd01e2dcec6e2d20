"""Gradient: the magnitude of the loss gradient."""
from __future__ import annotations

import torch

from .base import PruningCriterion, ScoreHook, register_criterion


@register_criterion("gradient")
class GradientCriterion(PruningCriterion):
    """Gradient: ``score = |dL/dW|``, computed in ``on_before_optimizer_step``.

    Intel Neural Compressor's ``gradient`` criterion. Gradients are not masked, so a pruned weight with a large
    gradient can be kept again (at value 0) when the masks are recomputed, as in the reference. Layers without a
    gradient (step 0) keep their last scores.
    """

    paper = "Intel Neural Compressor 2.x, criterion_type=gradient"
    needs_gradients = True
    score_hook = ScoreHook.BEFORE_OPTIMIZER_STEP

    @torch.no_grad()
    def on_before_optimizer_step(self) -> None:
        s, _, g = self._grads()
        if s:
            torch._foreach_copy_(s, g)
            torch._foreach_abs_(s)
