"""LAMP: magnitude rescaled within each layer so that one global threshold gives layer-adaptive sparsity."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import PruningCriterion, ScoreHook, register_criterion


def lamp_scores(weight: Tensor) -> Tensor:
    """LAMP scores of one layer (float32, the weight's shape): with the squared weights sorted ascending,
    ``W_u^2 / sum_{v >= u} W_v^2``. Equal weights are ordered by position (a stable sort), so the earlier one gets
    the lower score, as the exact-count rule breaks ties; an all-zero layer scores 0."""
    sq = weight.detach().reshape(-1).double().square()
    vals, order = torch.sort(sq, stable=True)
    tail = vals.flip(0).cumsum(0).flip(0)  # sum_{v >= u} W_v^2, in float64 (235k terms stay exact enough to rank)
    ratio = vals / tail.clamp_min(torch.finfo(torch.float64).tiny)  # 0 / tiny = 0 where the tail is all zeros
    out = torch.empty_like(ratio)
    out[order] = ratio
    return out.reshape(weight.shape).float()


@register_criterion("lamp")
class LampCriterion(PruningCriterion):
    """LAMP: with a layer's squared weights sorted ascending, the u-th one scores ``W_u^2 / sum_{v >= u} W_v^2``,
    computed in ``on_step_begin``.

    Lee, Park, Mo, Ahn & Shin 2021, "Layer-adaptive Sparsity for the Magnitude-based Pruning"
    (https://arxiv.org/abs/2010.07611; reference jaeho-lee/layer-adaptive-sparsity, ``tools/pruners.py``). Within a
    layer the score is monotone in |W|, so it ranks exactly like magnitude; what it changes is how layers compare:
    the largest weight of every layer scores exactly 1 (no layer is ever emptied), and one global threshold then
    gives each layer the sparsity that bounds the model's output distortion. So LAMP needs the ``global``
    distribution (any per-layer split makes it magnitude, and is refused).

    No state (recomputed from the weights at the steps that need scores: one stable sort per layer, at pruning
    steps only). A pruned weight (W = 0) scores 0 and stays pruned.

    Deviations from the reference: it sorts without caring about ties; we sort stably so equal weights keep our
    position rule. The paper defines LAMP for single weights; with a block or channel pattern the pattern reduces
    the weights' LAMP scores (``block_reduce``), which is not a block-level LAMP. The suffix sums run in float64.
    """

    paper = "Lee et al. 2021, Layer-adaptive Sparsity for the Magnitude-based Pruning (LAMP)"
    score_hook = ScoreHook.STEP_BEGIN
    distributions = ("global",)
    distributions_reason = ("LAMP rescales magnitude so that layers compare under one threshold; within a layer it "
                            "ranks exactly as magnitude, so with a per-layer split it would be magnitude")

    @torch.no_grad()
    def on_step_begin(self) -> None:
        for score, weight in zip(self._score_list, self._weights):
            score.copy_(lamp_scores(weight))
