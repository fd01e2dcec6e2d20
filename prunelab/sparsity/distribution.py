"""Distributions: how a target sparsity is split over the pruned layers.

``global`` ranks the blocks of all layers together with one threshold (layers end with different sparsities);
``uniform`` gives every layer the target; ``erk`` and ``er`` (Evci et al. 2020) give every layer a density
proportional to its Erdos-Renyi(-Kernel) ratio, so small layers stay denser; ``per_row`` gives every output row of
every layer the target (Wanda's comparison group). The wave-1 ``pattern.scope`` is an alias: ``global`` ->
``global``, ``local`` -> ``uniform``. Every distribution prunes exact counts (:mod:`prunelab.sparsity.patterns`)
within each layer's ``min/max_sparsity_ratio_per_op`` bounds, and can say, before any score exists, how many blocks
of each layer it will prune (:meth:`Distribution.layer_targets`; ``global``: unknown until the scores are ranked).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import math

import torch
from torch import Tensor

from ..errors import ConfigError
from ..options import config_to_dict
from ..registry import Registry
from .maskops import count_true
from .selection import lowest_k, lowest_k_rows, round_count

if TYPE_CHECKING:
    from .patterns import LayerBlocks, Pattern

SCOPE_ALIASES = {"global": "global", "local": "uniform"}


class Distribution:
    """Splits a target over layers and selects the pruned blocks of each. Subclasses are registered in
    :data:`DISTRIBUTIONS` (one class + one YAML in ``conf/distribution/``)."""

    name: str = ""
    paper: str = ""
    #: True when the split is fixed by the layers' shapes alone (one threshold per layer); False for a global
    #: ranking, whose per-layer sparsity follows from the scores.
    per_layer: bool = True
    #: True when the split fixes counts below the layer (per row): drop-and-grow, which keeps each layer's count but
    #: moves weights between rows, would not keep them, so regrowth refuses it.
    below_layer: bool = False

    def check_pattern(self, pattern: "Pattern") -> str | None:
        """Why this distribution cannot split a target for ``pattern`` (None: it can). The pruner makes a reason a
        one-line error before any work."""
        return None

    def layer_targets(self, sizes: Sequence[int], shapes: Sequence[tuple[int, ...]], target: float,
                      pattern: "Pattern", bounds: Sequence[tuple[int, int]] | None = None) -> list[int] | None:
        """Pruned blocks per layer at ``target``, from the layers' block counts ``sizes`` and weight ``shapes``
        (PyTorch layouts: Linear ``[out, in]``, Conv ``[out, in, k...]``), within the per-layer ``bounds``
        ``(lo, hi)`` in blocks where given; None when the scores decide."""
        return None

    def prune(self, layers: list["LayerBlocks"], target: float, pattern: "Pattern") -> list[Tensor]:
        """Pruned-block masks (bool, 1-D), one per layer."""
        counts = self.layer_targets([lay.size for lay in layers], [lay.shape for lay in layers], target,
                                    pattern, [(lay.lo, lay.hi) for lay in layers])
        assert counts is not None, f"{type(self).__name__} must implement prune() or layer_targets()"
        return [lowest_k(lay.blocks, min(max(k, lay.lo), lay.hi)) for lay, k in zip(layers, counts)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


DISTRIBUTIONS: Registry[type[Distribution]] = Registry("distribution.name")


@DISTRIBUTIONS.register("uniform")
class UniformDistribution(Distribution):
    """Every pruned layer at the target (the wave-1 ``pattern.scope=local``)."""

    name = "uniform"
    paper = "Zhu & Gupta 2017, To prune, or not to prune (uniform layer-wise sparsity)"

    def layer_targets(self, sizes: Sequence[int], shapes: Sequence[tuple[int, ...]], target: float,
                      pattern: "Pattern", bounds: Sequence[tuple[int, int]] | None = None) -> list[int]:
        counts = [pattern.block_target(target, b) for b in sizes]
        return counts if bounds is None else [min(max(k, lo), hi) for k, (lo, hi) in zip(counts, bounds)]


@DISTRIBUTIONS.register("global")
class GlobalDistribution(Distribution):
    """One threshold over all pruned layers' blocks (the wave-1 ``pattern.scope=global``); layers end with
    different sparsities, each within its per-op bounds."""

    name = "global"
    paper = "Intel Neural Compressor 2.x, prune_domain=global"
    per_layer = False

    def prune(self, layers: list["LayerBlocks"], target: float, pattern: "Pattern") -> list[Tensor]:
        sizes = [lay.size for lay in layers]
        k = pattern.block_target(target, sum(sizes))
        k = min(max(k, sum(lay.lo for lay in layers)), sum(lay.hi for lay in layers))
        # One selection over all layers; a layer it pushes past its max is held at its max (its own selection)
        # and the others share the rest, again with one selection (water-filling; usually one round).
        fixed: dict[int, Tensor] = {}
        free, budget = list(range(len(layers))), k
        while free:
            flat = torch.cat([layers[i].blocks for i in free])
            pruned = lowest_k(flat, budget).split([sizes[i] for i in free])
            counts = count_true(pruned)
            if any(c < layers[i].lo for c, i in zip(counts, free)):
                return self._bounded(layers, k)
            over = [i for c, i in zip(counts, free) if c > layers[i].hi]
            if not over:
                fixed.update(zip(free, pruned))
                break
            for i in over:
                fixed[i] = lowest_k(layers[i].blocks, layers[i].hi)
                budget -= layers[i].hi
            free = [i for i in free if i not in over]
        return [fixed[i] for i in range(len(layers))]

    @staticmethod
    def _bounded(layers: list["LayerBlocks"], k: int) -> list[Tensor]:
        """Exact selection when min bounds bind: every layer first prunes its `lo` lowest blocks; of its blocks
        ranked lo..hi-1, the globally lowest make up the rest. Bounds hold by construction."""
        sizes = [lay.size for lay in layers]
        forced = [lowest_k(lay.blocks, lay.lo) for lay in layers]
        eligible = [lowest_k(lay.blocks, lay.hi) & ~f for lay, f in zip(layers, forced)]
        inf = torch.tensor(float("inf"), device=layers[0].blocks.device)
        masked = torch.cat([torch.where(e, lay.blocks, inf) for lay, e in zip(layers, eligible)])
        rest = k - sum(lay.lo for lay in layers)
        extra = lowest_k(masked, rest).split(sizes)
        return [f | (x & e) for f, x, e in zip(forced, extra, eligible)]


@DISTRIBUTIONS.register("erk")
class ERKDistribution(Distribution):
    """Erdos-Renyi-Kernel: layer l keeps a density ``eps * (sum of its dims / product of its dims) ** power_scale``,
    ``eps`` solved so that exactly as many blocks go as under ``uniform``; a layer that would exceed its limit is
    held there (dense, or its per-op bound) and ``eps`` re-solved.

    Evci, Gale, Menick, Castro & Elsen 2020, "Rigging the Lottery: Making All Tickets Winners" (reference:
    google-research/rigl ``sparse_utils.get_sparsities``; jaxpruner ``sparsity_distributions.erk``). The ratio uses
    every dimension of the PyTorch weight (Linear ``[out, in]``, Conv ``[out, in, kh, kw]``: the sum is the same in
    any layout). Counts, stated once:

    * the budget is the reference's: ``sum_l floor(s * B_l)`` blocks over the layers' block counts ``B_l`` (the
      same number ``uniform`` prunes; N:M counts groups made N:M, as its pattern does);
    * layer l prunes ``clamp(B_l / f - eps * r_l * B_l / f, lo_l, hi_l)`` blocks (``f``: the fraction of a block
      the pattern removes; ``lo/hi``: the per-op bounds, ``lo = 0`` being "dense"), and ``eps`` solves the sum of
      those = the budget exactly. The reference's loop (make the densest layer dense, re-solve ``eps``, repeat) is
      this solve when only the dense limit binds; we solve it in one pass over the points where a layer meets a
      limit, which also holds the per-op max bound (``max_sparsity_ratio_per_op``, 0.98 by default);
    * the real counts are rounded to integers by largest remainder (ties: the earlier layer), so the total is
      exact. The reference rounds every layer on its own (its total can be off by a few weights).

    Layers the pruner skips or keeps dense (``prune.exclude``, the head) are not in the solve: the budget counts
    the pruned layers only, as the reference's ``filter_fn`` does.
    """

    name = "erk"
    paper = "Evci et al. 2020, Rigging the Lottery: Making All Tickets Winners (ERK)"

    def __init__(self, power_scale: float = 1.0) -> None:
        if isinstance(power_scale, bool) or not isinstance(power_scale, (int, float)) or not power_scale >= 0:
            raise ConfigError("distribution.power_scale", power_scale, "a number >= 0 (1: ERK as published)")
        self.power_scale = float(power_scale)

    def ratio(self, shape: Sequence[int]) -> float:
        """The layer's Erdos-Renyi-Kernel ratio: sum of its weight's dims over their product."""
        return (sum(shape) / math.prod(shape)) ** self.power_scale

    def layer_targets(self, sizes: Sequence[int], shapes: Sequence[tuple[int, ...]], target: float,
                      pattern: "Pattern", bounds: Sequence[tuple[int, int]] | None = None) -> list[int]:
        bounds = list(bounds) if bounds is not None else [(0, b) for b in sizes]
        budget = sum(pattern.block_target(target, b) for b in sizes)
        return erdos_renyi_counts(sizes, [self.ratio(s) for s in shapes], budget, pattern.removable_fraction, bounds)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(power_scale={self.power_scale})"


@DISTRIBUTIONS.register("er")
class ERDistribution(ERKDistribution):
    """Erdos-Renyi: as ``erk`` with the ratio ``(n_out + n_in) / (n_out * n_in)`` of the first two dims of the
    PyTorch weight (Conv ``[out, in, kh, kw]``: dims 0 and 1; the kernel size does not enter).

    Mocanu et al. 2018 (SET) for Linear layers, extended to convolutions by Evci et al. 2020 as the non-kernel
    variant. The TF/JAX references lay kernels out as ``[kh, kw, in, out]`` and take the last two dims; in PyTorch's
    layout those would be the kernel's height and width, so we take dims 0 and 1.
    """

    name = "er"
    paper = "Mocanu et al. 2018 / Evci et al. 2020 (Erdos-Renyi, kernel dims excluded)"

    def __init__(self) -> None:
        super().__init__(1.0)

    def ratio(self, shape: Sequence[int]) -> float:
        n_out, n_in = shape[0], shape[1]
        return (n_out + n_in) / (n_out * n_in)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def erdos_renyi_counts(sizes: Sequence[int], ratios: Sequence[float], budget: int, fraction: float,
                       bounds: Sequence[tuple[int, int]]) -> list[int]:
    """Pruned blocks per layer: ``p_l = clamp(c_l - eps * a_l, lo_l, hi_l)`` with ``c_l = B_l / f`` and
    ``a_l = r_l * B_l / f`` (density ``eps * r_l`` in weights), ``eps`` such that ``sum p_l = budget`` (the budget
    held within the bounds' sum), then rounded to integers by largest remainder (ties: the earlier layer).

    ``sum p_l`` falls in ``eps`` and is linear between the points where a layer meets a bound; the solve walks those
    points and interpolates on the segment that holds the budget, so ``eps`` is exact (no iteration tolerance).
    """
    c = [b / fraction for b in sizes]
    a = [r * b / fraction for r, b in zip(ratios, sizes)]
    lo, hi = [lw for lw, _ in bounds], [h for _, h in bounds]
    budget = min(max(budget, sum(lo)), sum(hi))

    def pruned(eps: float) -> list[float]:
        return [min(max(ci - eps * ai, lw), h) for ci, ai, lw, h in zip(c, a, lo, hi)]

    points = sorted({0.0, *((ci - h) / ai for ci, ai, h in zip(c, a, hi)),
                     *((ci - lw) / ai for ci, ai, lw in zip(c, a, lo))})
    eps, prev = points[-1], points[0]
    for point in points:
        if sum(pruned(point)) <= budget:
            g0, g1 = sum(pruned(prev)), sum(pruned(point))
            eps = point if g0 == g1 else prev + (g0 - budget) / (g0 - g1) * (point - prev)
            break
        prev = point
    real = [round_count(p) for p in pruned(eps)]
    counts = [math.floor(p) for p in real]
    rest = budget - sum(counts)
    order = sorted(range(len(real)), key=lambda i: (-(real[i] - counts[i]), i))
    for i in order:
        if rest <= 0:
            break
        if counts[i] < hi[i] and real[i] > counts[i]:
            counts[i] += 1
            rest -= 1
    return counts


@DISTRIBUTIONS.register("per_row")
class PerRowDistribution(Distribution):
    """Every output row of every layer at the target: the blocks of one row of the block grid are ranked among
    themselves, and each row prunes ``floor(s * blocks_per_row)`` (within the per-op bounds, per row).

    Wanda's comparison group (Sun et al. 2023: "compare weights on a per-output basis"), usable with any criterion.
    A row of the block grid is an output row for 1x1, 1xM and N:M, and N rows together for NxM blocks. ``channel``
    has one block per row, so it is refused (rows are what it removes).
    """

    name = "per_row"
    paper = "Sun, Liu, Bair & Kolter 2023, A Simple and Effective Pruning Approach for LLMs (per-output groups)"
    below_layer = True

    def check_pattern(self, pattern: "Pattern") -> str | None:
        if len(pattern.grid((0, 0))) < 2:  # a 1-D block grid: one block per row
            return (f"a pattern with several blocks per output row (NxM, N:M): {pattern.pattern} removes whole "
                    f"rows, so a row has nothing to rank")
        return None

    def row_count(self, cols: int, target: float, pattern: "Pattern") -> int:
        lo, hi = pattern.block_bounds(cols)
        return min(max(pattern.block_target(target, cols), lo), hi)

    def layer_targets(self, sizes: Sequence[int], shapes: Sequence[tuple[int, ...]], target: float,
                      pattern: "Pattern", bounds: Sequence[tuple[int, int]] | None = None) -> list[int]:
        out = []
        for shape in shapes:
            rows, cols = pattern.grid(shape)
            out.append(rows * self.row_count(cols, target, pattern))
        return out

    def prune(self, layers: list["LayerBlocks"], target: float, pattern: "Pattern") -> list[Tensor]:
        out = []
        for lay in layers:
            rows, cols = lay.grid
            out.append(lowest_k_rows(lay.blocks.reshape(rows, cols), self.row_count(cols, target, pattern)).reshape(-1))
        return out


def build_distribution(cfg: object) -> Distribution:
    """A distribution from its name, its config (``name`` + parameters) or itself."""
    if isinstance(cfg, Distribution):
        return cfg
    if cfg is None or isinstance(cfg, str):
        name, params = cfg or "global", {}
    else:
        params = config_to_dict(cfg)
        name = params.pop("name", "global")
    cls = DISTRIBUTIONS.get(str(name))
    DISTRIBUTIONS.parse(str(name), params)  # a declared Options dataclass types the parameters
    try:
        return cls(**params)
    except TypeError:
        raise ConfigError(f"distribution.{sorted(params)[0]}", params[sorted(params)[0]],
                          f"a parameter of distribution {name}") from None


def resolve_distribution(distribution: object, scope: str | None) -> Distribution:
    """The distribution in force: the one given, with the ``pattern.scope`` alias applied. ``scope`` switches the
    default ``global`` to ``uniform`` (local); a scope that contradicts an explicit other distribution is an error."""
    dist = build_distribution(distribution)
    if scope is None:
        return dist
    if scope not in SCOPE_ALIASES:
        raise ConfigError("pattern.scope", scope, f"one of {', '.join(SCOPE_ALIASES)} (or distribution=...)")
    alias = SCOPE_ALIASES[scope]
    if dist.name == alias:
        return dist
    if dist.name == "global":  # the default: the alias decides
        return build_distribution(alias)
    raise ConfigError("pattern.scope", scope,
                      f"null with distribution={dist.name} (scope is the wave-1 alias of distribution=global|uniform)")
