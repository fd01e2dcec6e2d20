"""Wanda: weight magnitude times the norm of the input feature it multiplies, from calibration batches."""
from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from .base import Calibration, PruningCriterion, ScoreHook, register_criterion

log = logging.getLogger("prunelab")


def conv_padding(conv: nn.modules.conv._ConvNd) -> list[int]:
    """``F.pad``'s argument (last dim first) for the padding the layer applies (ints, ``'same'`` or ``'valid'``)."""
    if isinstance(conv.padding, str):
        totals = [0] * len(conv.kernel_size) if conv.padding == "valid" else \
            [d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation)]
        per_dim = [(t // 2, t - t // 2) for t in totals]  # 'same': the extra one on the right, as torch does
    else:
        per_dim = [(p, p) for p in conv.padding]
    return [p for lo_hi in reversed(per_dim) for p in lo_hi]


def conv_input_sumsq(conv: nn.modules.conv._ConvNd, x: Tensor) -> Tensor:
    """Sum over the batch and the output positions of the squared im2col columns the layer's weight multiplies:
    a ``[C_in, *kernel]`` tensor (entry ``[c, i, j]``: the input channel ``c`` seen at kernel offset ``(i, j)``).

    The batch is summed first (``sum_b x_b^2``, one image's size), then padded as the layer pads (padding is an
    index map, so it commutes with the sum), then every kernel offset sums the strided window of positions it
    meets: no unfolded copy of the input, any number of spatial dims.
    """
    dims = len(conv.kernel_size)
    x = x.detach().float()
    if x.dim() == dims + 1:  # an unbatched input
        x = x.unsqueeze(0)
    x2 = x.square().sum(0, keepdim=True)  # [1, C, *spatial]
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    x2 = F.pad(x2, conv_padding(conv), mode=mode)[0]
    outs = [(n - d * (k - 1) - 1) // s + 1
            for n, k, d, s in zip(x2.shape[1:], conv.kernel_size, conv.dilation, conv.stride)]
    sums = x2.new_zeros((x2.shape[0], *conv.kernel_size))
    for offset in itertools.product(*(range(k) for k in conv.kernel_size)):
        window = tuple(slice(o * d, o * d + s * (n - 1) + 1, s)
                       for o, d, s, n in zip(offset, conv.dilation, conv.stride, outs))
        sums[(slice(None), *offset)] = x2[(slice(None), *window)].sum(dim=tuple(range(1, dims + 1)))
    return sums


def input_sumsq(module: nn.Module, x: Tensor) -> Tensor:
    """The squared L2 norm, over all calibration rows, of every input feature the layer's weight columns see:
    Linear ``[in]`` (rows: every sample and position), Conv ``[C_in, *kernel]`` (:func:`conv_input_sumsq`)."""
    if isinstance(module, nn.Linear):
        x = x.detach().float()
        return x.reshape(-1, x.shape[-1]).square().sum(0)
    return conv_input_sumsq(module, x)  # type: ignore[arg-type]


def weight_shaped(module: nn.Module, sumsq: Tensor) -> Tensor:
    """``sumsq`` laid over the weight: Linear ``[1, in]``; Conv ``[out, C_in / groups, *kernel]`` (output channel o
    of group g sees the input channels of group g)."""
    if isinstance(module, nn.Linear):
        return sumsq[None, :]
    out, groups = module.weight.shape[0], module.groups
    if groups == 1:
        return sumsq[None]
    per_group = sumsq.reshape(groups, sumsq.shape[0] // groups, *sumsq.shape[1:])
    return per_group[torch.arange(out, device=sumsq.device) // (out // groups)]


def _supported(module: Any) -> bool:
    conv = isinstance(module, nn.modules.conv._ConvNd) and not module.transposed
    return isinstance(module, nn.Linear) or conv


@register_criterion("wanda")
class WandaCriterion(PruningCriterion):
    """Wanda: ``score_ij = |W_ij| * ||X_j||_2``, X_j the j-th input feature of the layer over the calibration
    samples, from the criterion's own forward passes at pruning steps (``score_hook = model``).

    Sun, Liu, Bair & Kolter 2023, "A Simple and Effective Pruning Approach for Large Language Models"
    (https://arxiv.org/abs/2306.11695; reference locuslab/wanda, ``lib/prune.py`` ``prune_wanda`` and
    ``lib/layerwrapper.py``). Forward pre-hooks on the pruned layers collect ``sum x_j^2`` over every calibration
    row (Linear: every sample and token; Conv: every sample and output position of the im2col column), over
    ``batches`` training batches (the trainer hands them over: :class:`~prunelab.criteria.base.Calibration`), with
    the model in eval mode on the network as masked at the start of the pruning step.

    * **Comparison group**: within each output row by default (``default_distribution = per_row``: every row loses
      the same fraction, the paper's "per output" comparison); ``N:M`` (e.g. ``pattern=2in4``) with ``per_row``
      keeps the N highest of every M inputs of a row, as the paper's N:M. Any distribution is allowed;
      ``global`` compares raw ``|W| * ||X||`` across layers, which is **not** scale-normalised (layers with larger
      activations win), so say so when you use it.
    * **Conv** (the reference prunes Linear only): the input features are the im2col columns, (kh, kw, c_in) in our
      2-D view's column order (:func:`~prunelab.sparsity.patterns.as_2d`), with the layer's own stride, dilation,
      padding (and padding mode) and groups; the scores are written in the weight's layout, so the view's order
      follows.
    * **State**: none (recomputed at every pruning step). A pruned weight scores 0 and stays pruned.

    Deviations from the reference: it accumulates a running mean of ``||x_j||^2`` over samples (a factor
    ``1 / n_samples``, the same for every layer: no change in any ranking); we keep the plain sum of squares, the
    paper's ``||X_j||_2``. It prunes an LLM block by block, feeding each block the outputs of the already pruned
    ones; we score every layer from one set of passes over the network as masked when the pruning step begins
    (a schedule with several pruning steps re-scores on the newly masked network each time).
    """

    paper = "Sun, Liu, Bair & Kolter 2023, A Simple and Effective Pruning Approach for Large Language Models (Wanda)"
    score_hook = ScoreHook.MODEL
    default_distribution = "per_row"
    calibration = Calibration(batches=4)

    @dataclass
    class Options:
        batches: int = 4  #: calibration batches per pruning step
        batch_size: Optional[int] = None  #: samples per calibration batch (None: the trainer's batch size)

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        super().__init__(modules, config)
        opts = self.options
        if opts.batches < 1:
            raise ConfigError("criterion.batches", opts.batches, "an integer >= 1")
        if opts.batch_size is not None and opts.batch_size < 1:
            raise ConfigError("criterion.batch_size", opts.batch_size, "an integer >= 1 or null")
        self.calibration = Calibration(batches=opts.batches, batch_size=opts.batch_size)
        for name, mod in self.modules.items():
            if not _supported(mod):
                raise ConfigError(f"modules[{name!r}]", type(mod).__name__,
                                  "an nn.Linear or nn.Conv1d/2d/3d layer (wanda hooks the layer's inputs)")

    @torch.no_grad()
    def score_model(self, model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> None:
        sums: dict[str, Tensor] = {}

        def collect(name: str, module: nn.Module) -> Any:
            def hook(mod: nn.Module, args: tuple[Any, ...]) -> None:
                term = input_sumsq(mod, args[0])
                sums[name] = term if name not in sums else sums[name] + term
            return module.register_forward_pre_hook(hook)

        handles = [collect(name, mod) for name, mod in self.modules.items()]
        model.eval()
        try:
            for x, _ in batches:
                model(x)
        finally:
            for h in handles:
                h.remove()
        for name, score, weight in zip(self.names, self._score_list, self._weights):
            if name not in sums:
                log.warning("prunelab: wanda: layer %s saw no input in the calibration passes; it scores 0", name)
                score.zero_()
                continue
            norms = weight_shaped(self.modules[name], sums[name]).sqrt()
            torch.mul(weight.detach().abs().float(), norms, out=score)
