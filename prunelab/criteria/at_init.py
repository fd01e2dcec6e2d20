"""Pruning at initialization: SNIP as published (``snip_init``), GraSP (``grasp``, ``grasp_abs``) and SynFlow.

Model-level criteria (``score_hook = model``): at a pruning step the pruner calls ``score_model(model, batches)``
on the masked model, inside a sandbox that restores BatchNorm statistics, gradients, train/eval mode and the RNG,
with the calibration batches the criterion asks for (:attr:`calibration`). With ``schedule=at_init`` that is
before the first optimizer step; the masks then stay fixed. Each criterion runs its own forward/backward passes
and never touches the model's ``.grad`` (it uses ``torch.autograd.grad``).

Common to all four: the scores are written as float32 (higher = kept, our convention), a pruned weight (exactly
0 in the masked model) can never outrank a kept one, and the loss is the trainer's (cross-entropy on the logits).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Calibration, PruningCriterion, ScoreHook, register_criterion

Batch = tuple[Tensor, Tensor]
_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"criterion.{key}", value, "an integer >= 1")
    return int(value)


def _grad(output: Tensor, inputs: Sequence[Tensor], create_graph: bool = False) -> tuple[Tensor, ...]:
    """``d output / d inputs`` without touching ``.grad``; an input the output does not depend on gets zeros."""
    return torch.autograd.grad(output, list(inputs), create_graph=create_graph, allow_unused=True,
                               materialize_grads=True)


def _mean_gradient(model: nn.Module, weights: Sequence[Tensor], batches: Sequence[Batch],
                   temperature: float = 1.0) -> list[Tensor]:
    """The gradient of the mean cross-entropy over all samples of ``batches`` (each batch's mean-loss gradient
    weighted by its share of the samples), with respect to ``weights``."""
    total = sum(len(y) for _, y in batches)
    grads = [torch.zeros_like(w) for w in weights]
    for x, y in batches:
        loss = F.cross_entropy(model(x) / temperature, y)
        for acc, g in zip(grads, _grad(loss, weights)):
            acc.add_(g, alpha=len(y) / total)
    return grads


class _AtInitCriterion(PruningCriterion):
    """Shared by the criteria of this module: model-level scoring and the float32 write-back."""

    score_hook = ScoreHook.MODEL
    at_init = True

    @torch.no_grad()
    def _write(self, values: Iterable[Tensor]) -> None:
        for score, value in zip(self._score_list, values):
            score.copy_(value.to(score.dtype))


@register_criterion("snip_init")
class SnipInitCriterion(_AtInitCriterion):
    """SNIP as its paper uses it: ``score = |W * dL/dW|`` from ``criterion.batches`` mini-batches, once, at
    initialization (with ``schedule=at_init``; a gradual schedule re-scores it at every pruning step).

    Lee, Ajanthan & Torr 2019, "SNIP: Single-shot Network Pruning based on Connection Sensitivity"
    (https://arxiv.org/abs/1810.02340): the connection sensitivity ``|dL/dc_j|`` at ``c = 1`` of a mask ``c`` on
    the weights is ``|w_j * g_j|``. Computed in ``score_model`` (a model-level criterion, so that ``schedule=at_init``
    can prune at step 0 without a training step; ``snip`` is the per-step form Intel Neural Compressor uses during
    training).

    * ``g`` is the gradient of the mean cross-entropy over all calibration samples: the per-batch gradients are
      **averaged** (weighted by batch size), not summed, so the scores' scale does not depend on
      ``criterion.batches`` (summing ranks identically: one positive factor for every weight).
    * The paper's normalisation ``s_j / sum_k s_k`` is left out: one positive factor, the same ranking.
    * The model is scored in train mode (BatchNorm on batch statistics, as the first training step sees it; the
      sandbox restores the running statistics). Synaptic-Flow's port scores in eval mode by default.
    * No history: the scores are recomputed at every pruning step (with ``at_init``: once); the last ones go into
      checkpoints, as for every criterion that cannot recompute them from the weights alone.
    """

    paper = "Lee, Ajanthan & Torr 2019, SNIP: Single-shot Network Pruning based on Connection Sensitivity"

    @dataclass
    class Options:
        batches: int = 1  #: mini-batches of training samples the gradient is averaged over
        batch_size: Optional[int] = None  #: samples per mini-batch (None: the trainer's batch size)

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        super().__init__(modules, config)
        size = self.options.batch_size
        self.calibration = Calibration(batches=_positive_int("batches", self.options.batches),
                                       batch_size=None if size is None else _positive_int("batch_size", size))

    def score_model(self, model: nn.Module, batches: Iterable[Batch]) -> None:
        model.train()
        grads = _mean_gradient(model, self._weights, list(batches))
        with torch.no_grad():
            self._write((w * g).abs() for w, g in zip(self._weights, grads))


@register_criterion("grasp")
class GraspCriterion(_AtInitCriterion):
    """GraSP, at initialization (``schedule=at_init``): prune the weights with the largest ``-W * (H g)`` (keep
    the lowest); our score is ``W * (H g)``.

    Wang, Zhang & Grosse 2020, "Picking Winning Tickets Before Training by Preserving Gradient Flow"
    (https://arxiv.org/abs/2002.07376; reference: alecwangcq/GraSP ``pruner/GraSP.py``). Removing weights
    ``delta`` changes the gradient norm by ``2 delta^T H g`` to first order; GraSP scores ``S = -theta * (H g)``
    and removes the largest S, the weights whose removal reduces the gradient flow least (or increases it).
    Since our convention is "higher score = kept", the stored score is ``-S = W * (H g)`` and the lowest go:
    the same mask. Computed in ``score_model``:

    * ``g`` = gradient of the mean cross-entropy of ``logits / T`` (temperature ``criterion.temperature``,
      200 as in the reference) over a class-balanced calibration batch of ``criterion.samples_per_class``
      samples of every class (25 by default, the reference's CIFAR-10 setting), w.r.t. every Linear/Conv weight
      of the model (the pruned layers and the others, e.g. the classifier head, as the reference does; biases and
      BatchNorm parameters are not in ``g``, as in the reference);
    * ``H g`` by a second backward through the first one (``create_graph=True``): ``z = sum(g.detach() * grad L)``,
      ``H g = dz/dW``. With one calibration batch both come from one forward pass; with several, ``g`` is the
      sample-weighted mean first and ``H g`` then the sample-weighted mean of the per-batch products.

    Deviations from the reference: it splits the batch in two halves and sums both g and Hg over them (a factor
    4 on every score, the same ranking); it re-initialises the Linear layers of a copy (xavier_normal) before
    scoring while the mask is applied to the original network; we score the network that will be trained, as
    initialised (no re-initialisation). The model is scored in train mode (as the reference; the sandbox restores
    BatchNorm statistics). A weight that is already 0 (pruned at an earlier pruning step or round) scores
    ``-inf``: its ``W * Hg`` is 0, which is not the lowest of signed scores, so without this a gradual or
    iterative GraSP would bring pruned weights back. Ties at exact-count pruning are broken by position; the
    reference keeps every tie at the threshold. No history: the scores are recomputed at every pruning step.
    """

    paper = "Wang, Zhang & Grosse 2020, Picking Winning Tickets Before Training by Preserving Gradient Flow"

    @dataclass
    class Options:
        samples_per_class: int = 25  #: calibration samples of every class (one class-balanced batch)
        temperature: float = 200.0  #: the logits are divided by it (the reference's T)

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        super().__init__(modules, config)
        self.calibration = Calibration(per_class=_positive_int("samples_per_class", self.options.samples_per_class))
        self.temperature = float(self.options.temperature)
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError("criterion.temperature", self.options.temperature, "a number > 0")

    def hessian_gradient(self, model: nn.Module, batches: Sequence[Batch]) -> list[Tensor]:
        """``H g`` restricted to the pruned layers' weights (H and g over every Linear/Conv weight of ``model``)."""
        weights = _linear_conv_weights(model, self._weights)
        t = self.temperature
        if len(batches) == 1:
            x, y = batches[0]
            grads = _grad(F.cross_entropy(model(x) / t, y), weights, create_graph=True)
            z = sum((g.detach() * g).sum() for g in grads)
            hg = _grad(z, weights)
        else:
            g_mean = _mean_gradient(model, weights, batches, t)
            total = sum(len(y) for _, y in batches)
            hg = tuple(torch.zeros_like(w) for w in weights)
            for x, y in batches:
                grads = _grad(F.cross_entropy(model(x) / t, y), weights, create_graph=True)
                z = sum((g0 * g).sum() for g0, g in zip(g_mean, grads))
                for acc, h in zip(hg, _grad(z, weights)):
                    acc.add_(h, alpha=len(y) / total)
        return list(hg[: len(self._weights)])

    def score_model(self, model: nn.Module, batches: Iterable[Batch]) -> None:
        model.train()
        hg = self.hessian_gradient(model, list(batches))
        with torch.no_grad():
            self._write(self._from_product(w, w * h) for w, h in zip(self._weights, hg))

    @staticmethod
    def _from_product(weight: Tensor, whg: Tensor) -> Tensor:
        return whg.masked_fill(weight == 0, -math.inf)


@register_criterion("grasp_abs")
class GraspAbsCriterion(GraspCriterion):
    """|GraSP|, at initialization (``schedule=at_init``): ``score = |W * (H g)|``, the lowest magnitude goes
    (Frankle et al. 2021's variant of GraSP).

    Frankle, Dziugaite, Roy & Carbin 2021, "Pruning Neural Networks at Initialization: Why are We Missing the
    Mark?" (https://arxiv.org/abs/2009.08576) found that ranking GraSP's score by magnitude (removing the weights
    whose removal changes the gradient flow least, in either direction) does better than GraSP as published.
    Everything else as :class:`GraspCriterion` (temperature, class-balanced calibration, H g by double backward,
    no re-initialisation); a pruned weight scores 0, the lowest possible.
    """

    paper = ("Frankle, Dziugaite, Roy & Carbin 2021, Pruning Neural Networks at Initialization: Why are We Missing "
             "the Mark? (|GraSP| of Wang et al. 2020)")

    @staticmethod
    def _from_product(weight: Tensor, whg: Tensor) -> Tensor:
        return whg.abs()


def _linear_conv_weights(model: nn.Module, first: Sequence[Tensor]) -> list[Tensor]:
    """``first`` (the pruned weights, in order), then every other Linear/Conv weight of ``model``."""
    seen = {id(w) for w in first}
    rest = [m.weight for m in model.modules()
            if isinstance(m, _LAYERS) and isinstance(m.weight, Tensor) and id(m.weight) not in seen]
    return [*first, *rest]


_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@register_criterion("synflow")
class SynFlowCriterion(_AtInitCriterion):
    """SynFlow, at initialization (``schedule=at_init``): ``score = |theta * dR/dtheta|``, R the synaptic flow of
    an all-ones input through the abs-valued network, iteratively over ``criterion.rounds`` rounds (data-free).

    Tanaka, Kunin, Yamins & Ganguli 2020, "Pruning neural networks without any data by iteratively conserving
    synaptic flow" (https://arxiv.org/abs/2006.05467; reference: ganguli-lab/Synaptic-Flow
    ``Pruners/pruners.py``, ``prune.py``). Computed in ``score_model`` on the currently masked network:

    * the model in eval mode run (``torch.func.functional_call``) with every floating parameter and buffer replaced
      by its absolute value (new tensors: the model's own are not touched; the reference takes ``abs`` of the whole
      ``state_dict`` in place, BatchNorm statistics too, and restores the signs after), in float64 by default
      (``criterion.dtype``; the reference runs float32, where the flow of a deep network over- or underflows);
    * ``R = sum(model(1))`` for an all-ones input of one sample's shape (the calibration batch gives only the
      shape, device and dtype; its values are never read); ``score = |theta * dR/dtheta|`` for every pruned
      weight, **divided by R** (computed in float64, then stored as float32: one positive factor, the same
      ranking, and scores that fit float32 whatever the depth; for a bias-free network each layer's scores then
      sum to 1). ``self.flow`` keeps the last R.
    * Iterative: ``criterion.rounds`` (100, the paper's) scoring rounds per pruning step, the pruner's rounds:
      round k of n keeps ``(1 - s) ** (k / n)`` of the weights (exponential), each re-scored on the network the
      last round left. Pruned weights have theta = 0, hence score 0, and stay pruned.

    Deviations from the reference: its "sparsity" means the kept fraction (we keep ``1 - s``); its
    ``score <= threshold`` prunes every tie at the threshold (it overshoots); we prune exactly
    ``floor(s * n)``, ties broken by position. Its ``shuffle`` option is a no-op bug; our ablations are
    ``criterion.ablation``. No history: the scores are recomputed in every round.
    """

    paper = ("Tanaka, Kunin, Yamins & Ganguli 2020, Pruning neural networks without any data by iteratively "
             "conserving synaptic flow")
    calibration = Calibration(batches=1, batch_size=1)

    @dataclass
    class Options:
        rounds: int = 100  #: scoring rounds per pruning step (round k of n keeps (1 - s) ** (k / n))
        dtype: str = "float64"  #: float64 | float32: the precision of the flow computation

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        super().__init__(modules, config)
        self.rounds = _positive_int("rounds", self.options.rounds)
        if self.options.dtype not in _DTYPES:
            raise ConfigError("criterion.dtype", self.options.dtype, " or ".join(_DTYPES))
        self.dtype = _DTYPES[self.options.dtype]
        self.flow = math.nan

    def score_model(self, model: nn.Module, batches: Iterable[Batch]) -> None:
        x = next(iter(batches))[0]
        state, weights = self._linearized(model)
        ones = torch.ones((1, *x.shape[1:]), dtype=self.dtype, device=x.device)
        model.eval()
        flow = torch.func.functional_call(model, state, (ones,)).sum()
        grads = _grad(flow, weights)
        self.flow = float(flow.detach())
        if not math.isfinite(self.flow):
            raise FloatingPointError(f"synflow: the flow R = {self.flow} is not finite in {self.options.dtype} "
                                     "(criterion.dtype=float64 for deep networks)")
        with torch.no_grad():
            if self.flow == 0.0:  # every path is cut: nothing carries flow
                self._write(torch.zeros_like(g) for g in grads)
            else:
                self._write((w * g).abs_().div_(flow) for w, g in zip(weights, grads))

    @torch.no_grad()
    def _linearized(self, model: nn.Module) -> tuple[dict[str, Tensor], list[Tensor]]:
        """``model``'s parameters and buffers as absolute values in ``self.dtype`` (new tensors: the model is not
        touched), for ``torch.func.functional_call``, and those of the pruned weights (requiring grad)."""
        state: dict[str, Tensor] = {}
        for name, t in (*model.named_parameters(), *model.named_buffers()):
            state[name] = t.detach().to(self.dtype).abs() if t.is_floating_point() else t
        by_id = {id(p): n for n, p in model.named_parameters()}
        missing = [n for n, w in zip(self.names, self._weights) if id(w) not in by_id]
        if missing:
            raise ConfigError("criterion.modules", missing, "layers of the model given to score_model")
        weights = [state[by_id[id(w)]].requires_grad_() for w in self._weights]
        return state, weights
