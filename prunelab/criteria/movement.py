"""Movement: weights that move away from zero during training are kept, those moving toward zero go."""
from __future__ import annotations

import torch

from .base import PruningCriterion, ScoreHook, register_criterion


@register_criterion("movement")
class MovementCriterion(PruningCriterion):
    """Movement, accumulated form: ``S <- S - W * dL/dW`` at every step, S starting at 0, computed in
    ``on_before_optimizer_step``.

    Sanh, Wolf & Rush 2020, "Movement Pruning: Adaptive Sparsity by Fine-Tuning" (https://arxiv.org/abs/2005.07683;
    reference: huggingface/transformers ``examples/research_projects/movement-pruning``, its ``emmental`` layers).
    The paper learns scores S through a straight-through estimator, so that ``dL/dS = dL/dW' * W`` (W' the masked
    weight) and, with plain SGD on S at rate 1, ``S_T = -sum_t W_t * g_t`` (its eq. 3 with the learning rate
    folded in). That sum is what we accumulate: a weight whose update moves it toward 0 (W and g of the same sign
    under gradient descent) loses score, one moving away from 0 gains. Higher S is kept.

    State: S, updated at every step until the masks are final, saved with the checkpoint.

    Deviations from the reference, on purpose: it learns S with its own optimizer (AdamW, its own learning rate,
    warm-up) through the straight-through estimator, and pruned weights keep their values and go on moving S;
    ours is the accumulated hook form above: a pruned weight is 0, so its S stays frozen at its value when pruned
    (it can come back, at 0, if its frozen S outranks a kept weight's falling one at a later pruning step). Soft
    movement (a threshold on sigmoid(S) with an L1 penalty) is not built. The method is designed for fine-tuning a
    pre-trained model; from scratch under SGD, ``-W * g`` is about ``(W_{t+1}^2 - W_t^2) / (2 lr)``, so S tracks
    the growth of W^2 and ranks near magnitude. Scores of different layers are not normalised: with ``global``
    they compare raw sums.
    """

    paper = "Sanh, Wolf & Rush 2020, Movement Pruning: Adaptive Sparsity by Fine-Tuning (accumulated form)"
    needs_gradients = True
    stateful = True
    score_hook = ScoreHook.BEFORE_OPTIMIZER_STEP

    @torch.no_grad()
    def on_before_optimizer_step(self) -> None:
        s, w, g = self._grads()
        if not s:
            return
        if w[0].dtype == torch.float32 and g[0].dtype == torch.float32:
            torch._foreach_addcmul_(s, w, g, value=-1.0)  # S -= W * g, one pass
        else:
            torch._foreach_sub_(s, [(x * y).float() for x, y in zip(w, g)])
