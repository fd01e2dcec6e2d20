"""Distributions: how a target sparsity is split over the pruned layers.

``global`` ranks the blocks of all layers together with one threshold (layers end with different sparsities);
``uniform`` gives every layer the target. The wave-1 ``pattern.scope`` is an alias: ``global`` -> ``global``,
``local`` -> ``uniform``. Every distribution prunes exact counts (:mod:`prunelab.sparsity.patterns`) within each
layer's ``min/max_sparsity_ratio_per_op`` bounds, and can say, before any score exists, how many blocks of each
layer it will prune (:meth:`Distribution.layer_targets`; ``global``: unknown until the scores are ranked).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..errors import ConfigError
from ..options import config_to_dict
from ..registry import Registry
from .selection import lowest_k

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

    def layer_targets(self, sizes: Sequence[int], shapes: Sequence[tuple[int, ...]], target: float,
                      pattern: "Pattern") -> list[int] | None:
        """Pruned blocks per layer at ``target`` (before bounds), from the layers' block counts ``sizes`` and weight
        ``shapes`` (PyTorch layouts: Linear ``[out, in]``, Conv ``[out, in, k...]``); None when the scores decide."""
        return None

    def prune(self, layers: list["LayerBlocks"], target: float, pattern: "Pattern") -> list[Tensor]:
        """Pruned-block masks (bool, 1-D), one per layer."""
        counts = self.layer_targets([lay.size for lay in layers], [lay.shape for lay in layers], target,
                                    pattern)
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
                      pattern: "Pattern") -> list[int]:
        return [pattern.block_target(target, b) for b in sizes]


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
            counts = torch.stack([torch.count_nonzero(p) for p in pruned]).tolist()
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
