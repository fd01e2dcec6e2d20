"""Which layers a pruner prunes: op type, include/exclude name globs, the classifier head, and whether the
pattern can tile the layer's shape. Every candidate layer is listed with the reason it is pruned or skipped."""
from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from .errors import ConfigError
from .sparsity.patterns import Pattern

log = logging.getLogger("prunelab")

DEFAULT_OP_TYPES: tuple[str, ...] = ("Linear", "Conv1d", "Conv2d", "Conv3d")


@dataclass(frozen=True)
class LayerInfo:
    """One candidate layer: pruned, or skipped and why."""

    name: str
    op_type: str
    shape: tuple[int, ...]
    pruned: bool
    reason: str = ""

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _as_list(x: Any) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [x]
    return [str(v) for v in x]


def select_layers(
    model: nn.Module,
    pattern: Pattern,
    op_types: Sequence[str] = DEFAULT_OP_TYPES,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    head: str | None = None,
    warn: bool = True,
) -> tuple[dict[str, nn.Module], list[LayerInfo]]:
    """Choose the layers to prune: op type in ``op_types``, name matching an ``include`` glob (all if empty),
    no ``exclude`` glob, not the classifier ``head``, and a shape the pattern can tile.

    Returns the chosen layers and a table of every layer with a weight of 2 or more dimensions, pruned or
    skipped with its reason. Globs that match no candidate layer are errors (a typo would silently prune
    something else). ``warn``: log each layer the pattern cannot tile (once the selection stands).
    """
    include, exclude, op_types = _as_list(include), _as_list(exclude), _as_list(op_types)
    chosen: dict[str, nn.Module] = {}
    table: list[LayerInfo] = []
    untiled: list[LayerInfo] = []  # skipped because the pattern cannot tile them
    candidates: list[str] = []
    for name, mod in model.named_modules():
        weight = getattr(mod, "weight", None)
        if not isinstance(weight, Tensor) or weight.dim() < 2:
            continue
        op = type(mod).__name__
        shape = tuple(weight.shape)

        def skip(reason: str) -> None:
            table.append(LayerInfo(name, op, shape, False, reason))

        if op not in op_types:
            skip(f"op type {op} not in prune.op_types")
            continue
        candidates.append(name)
        if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
            skip("matches no prune.include pattern")
        elif any(fnmatch.fnmatchcase(name, p) for p in exclude):
            skip("matches a prune.exclude pattern")
        elif head is not None and name == head:
            skip("classifier head (set prune.exclude_head=false to prune it)")
        elif (why := pattern.skip_reason(weight.shape)) is not None:
            skip(why)
            untiled.append(table[-1])
        else:
            chosen[name] = mod
            table.append(LayerInfo(name, op, shape, True))
    for key, globs in (("prune.include", include), ("prune.exclude", exclude)):
        for glob in globs:
            if not any(fnmatch.fnmatchcase(c, glob) for c in candidates):
                raise ConfigError(key, glob, f"a name glob matching some of the layers {candidates}")
    if not chosen:  # named after the last filter that took layers: the pattern, else the globs that were set
        key, value = ("pattern", pattern.pattern) if untiled or not (include or exclude) else \
            ("prune.exclude", exclude) if exclude else ("prune.include", include)
        raise ConfigError(key, value, f"settings that leave at least one layer to prune; layers: {candidates}")
    for row in untiled if warn else ():  # once the selection stands (a refused one is its error's one line)
        log.warning("prunelab: layer %s %s skipped: %s (pattern %s)", row.name, list(row.shape), row.reason,
                    pattern.pattern)
    return chosen, table
