"""Patterns: how a weight is cut into blocks, and how element scores become one score per block.

A weight is viewed as 2-D: Linear ``[out, in]``; Conv ``[out, k... * in]`` (the reference's ``permute(0, 2, 3, 1)``:
input channels fastest, so a ``1xM`` block or an N:M group spans input channels at one kernel position, as
sparse tensor cores expect). The registered tilings (``prunelab list patterns``):

* ``NxM`` blocks: N consecutive output rows x M consecutive columns; ``1x1`` is unstructured, ``4x1`` the
  reference's default. A block's score is the mean of its elements (``block_reduce``: ``sum`` or ``max``).
* ``N:M``: keep the N highest of every M consecutive weights along the input dimension (2:4 is what sparse
  tensor cores run). A group is either left dense or made N:M; groups are ranked by the mean score of the
  weights N:M would remove, so a target t makes ``floor(t * groups * M / (M - N))`` groups N:M and at most
  ``(M - N) / M`` of the weights can go.
* ``channel``: whole output channels (rows of the 2-D view), ranked by their reduced score.

Rounding, stated once: a target t prunes exactly ``floor(t * B)`` of the B blocks in scope (N:M: groups as
above), with t * B rounded to 1e-6 first so that 0.29 x 100 blocks is 29, not 28. Per-layer bounds are counts
too: at least ``ceil(min_sparsity_ratio_per_op * B_l)`` and at most ``floor(max_sparsity_ratio_per_op * B_l)``
blocks of layer l; where a bound and the target disagree, the bound wins. The lowest scores are pruned; equal
scores are broken by position (the earlier block in layer order, then row-major order, is pruned first), so the
same scores always give the same mask. Which blocks are ranked together is the distribution's job
(:mod:`prunelab.sparsity.distribution`).
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..errors import ConfigError
from ..registry import Registry
from .selection import kept_in_groups, round_count

log = logging.getLogger("prunelab")

REDUCES = ("mean", "sum", "max")
SCOPES = ("global", "local")
PATTERN_HELP = "'NxM' blocks (e.g. 1x1, 4x1, 1x4), 'N:M' with 0 < N < M (e.g. 2:4) or 'channel'"


def as_2d(t: Tensor) -> Tensor:
    """The 2-D view of a weight: [out, in] for Linear, [out, k... * in] (input channels fastest) for Conv."""
    if t.dim() == 2:
        return t
    if t.dim() < 2:
        return t.reshape(1, -1)
    return t.movedim(1, -1).reshape(t.shape[0], -1)


def from_2d(t2: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of :func:`as_2d` for a tensor of the given weight shape."""
    if len(shape) == 2:
        return t2
    if len(shape) < 2:
        return t2.reshape(shape)
    moved = (shape[0], *shape[2:], shape[1])
    return t2.reshape(moved).movedim(-1, 1)


Reduce = Callable[[Tensor, tuple[int, ...]], Tensor]
Expand = Callable[[Tensor], Tensor]  # pruned blocks (bool, 1-D) -> keep mask of the 2-D view


class Tiling:
    """One kind of pattern: how a 2-D view ``[rows, cols]`` is cut into blocks. Subclasses are registered in
    :data:`PATTERNS` under their syntax and parse the ``pattern.type`` strings they accept."""

    kind: str = ""
    paper: str = ""
    n: int = 1
    m: int = 1

    @classmethod
    def parse(cls, text: str) -> "Tiling | None":
        """An instance for ``text`` (lower-case, stripped) if this tiling accepts it, else None."""
        raise NotImplementedError

    @property
    def removable_fraction(self) -> float:
        """The most of a block the tiling removes."""
        return 1.0

    def skip_reason(self, rows: int, cols: int) -> str | None:
        return None

    def grid(self, rows: int, cols: int) -> tuple[int, ...]:
        """The shape of the block grid of a ``[rows, cols]`` view (its rows are the view's rows, or groups of them)."""
        raise NotImplementedError

    def num_blocks(self, rows: int, cols: int) -> int:
        return math.prod(self.grid(rows, cols))

    def blocks(self, s2: Tensor, reduce: Reduce) -> tuple[Tensor, tuple[int, ...], Expand]:
        """Block scores (1-D, row-major over the block grid), the grid's shape, and the expansion of pruned blocks
        into a keep-mask of the 2-D view."""
        raise NotImplementedError

    #: True when every weight is removed on its own (1x1, N:M), so a weight is its own unit (:meth:`unit_sums`)
    elementwise: bool = True

    def unit_sums(self, t2: Tensor) -> Tensor:
        """``t2`` summed over each unit the tiling removes together (an NxM block, an output channel), broadcast
        back to ``t2``'s shape; a weight removed on its own is its own unit (``t2`` itself)."""
        return t2


PATTERNS: Registry[type[Tiling]] = Registry("pattern.type")


@PATTERNS.register("NxM")
class BlockTiling(Tiling):
    """N consecutive output rows x M consecutive columns; 1x1 is unstructured, 4x1 the reference's default."""

    kind = "block"
    paper = "Intel Neural Compressor 2.x, pattern NxM"
    _SYNTAX = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")

    def __init__(self, n: int, m: int) -> None:
        self.n, self.m = n, m

    @classmethod
    def parse(cls, text: str) -> "BlockTiling | None":
        if (mt := cls._SYNTAX.match(text)) and int(mt.group(1)) >= 1 and int(mt.group(2)) >= 1:
            return cls(int(mt.group(1)), int(mt.group(2)))
        return None

    def skip_reason(self, rows: int, cols: int) -> str | None:
        if rows % self.n or cols % self.m:
            return f"2-D view [{rows}, {cols}] is not divisible into {self.n}x{self.m} blocks"
        return None

    def grid(self, rows: int, cols: int) -> tuple[int, ...]:
        return (rows // self.n, cols // self.m)

    @property
    def elementwise(self) -> bool:  # type: ignore[override]
        return self.n == 1 and self.m == 1

    def unit_sums(self, t2: Tensor) -> Tensor:
        if self.elementwise:
            return t2
        rows, cols = t2.shape
        sums = t2.reshape(rows // self.n, self.n, cols // self.m, self.m).sum((1, 3), keepdim=True)
        return sums.expand(rows // self.n, self.n, cols // self.m, self.m).reshape(rows, cols)

    def blocks(self, s2: Tensor, reduce: Reduce) -> tuple[Tensor, tuple[int, ...], Expand]:
        rows, cols = s2.shape
        n, m = self.n, self.m
        grid = (rows // n, cols // m)
        if n == 1 and m == 1:
            blocks = s2.reshape(-1)
        else:
            blocks = reduce(s2.reshape(rows // n, n, cols // m, m), (1, 3)).reshape(-1)

        def expand(pruned: Tensor) -> Tensor:
            keep = (~pruned).reshape(rows // n, 1, cols // m, 1).expand(rows // n, n, cols // m, m)
            return keep.reshape(rows, cols)

        return blocks, grid, expand


@PATTERNS.register("N:M")
class NMTiling(Tiling):
    """Keep the N highest of every M consecutive inputs (2:4 is what sparse tensor cores run); a group is left
    dense or made N:M, ranked by the mean score of the weights N:M would remove."""

    kind = "nm"
    paper = "Mishra et al. 2021, Accelerating Sparse Deep Neural Networks (2:4 sparse tensor cores)"
    _SYNTAX = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")

    def __init__(self, n: int, m: int) -> None:
        self.n, self.m = n, m

    @classmethod
    def parse(cls, text: str) -> "NMTiling | None":
        if (mt := cls._SYNTAX.match(text)) and 0 < int(mt.group(1)) < int(mt.group(2)):
            return cls(int(mt.group(1)), int(mt.group(2)))
        return None

    @property
    def removable_fraction(self) -> float:
        return (self.m - self.n) / self.m

    def skip_reason(self, rows: int, cols: int) -> str | None:
        if cols % self.m:
            return f"2-D view [{rows}, {cols}]: {cols} inputs are not divisible into groups of {self.m}"
        return None

    def grid(self, rows: int, cols: int) -> tuple[int, ...]:
        return (rows, cols // self.m)

    def blocks(self, s2: Tensor, reduce: Reduce) -> tuple[Tensor, tuple[int, ...], Expand]:
        rows, cols = s2.shape
        n, m = self.n, self.m
        groups = s2.reshape(rows, cols // m, m)
        keep_in_group = kept_in_groups(groups, n)
        removed = groups.masked_fill(keep_in_group, 0.0).sum(-1) / (m - n)

        def expand(pruned: Tensor) -> Tensor:
            keep = keep_in_group | ~pruned.reshape(rows, cols // m, 1)
            return keep.reshape(rows, cols)

        return removed.reshape(-1), (rows, cols // m), expand


@PATTERNS.register("channel")
class ChannelTiling(Tiling):
    """Whole output channels (rows of the 2-D view), ranked by their reduced score."""

    kind = "channel"
    paper = "Li et al. 2017, Pruning Filters for Efficient ConvNets"
    m = 0

    @classmethod
    def parse(cls, text: str) -> "ChannelTiling | None":
        return cls() if text == "channel" else None

    elementwise = False

    def grid(self, rows: int, cols: int) -> tuple[int, ...]:
        return (rows,)

    def unit_sums(self, t2: Tensor) -> Tensor:
        return t2.sum(1, keepdim=True).expand_as(t2)

    def blocks(self, s2: Tensor, reduce: Reduce) -> tuple[Tensor, tuple[int, ...], Expand]:
        rows, cols = s2.shape

        def expand(pruned: Tensor) -> Tensor:
            return (~pruned)[:, None].expand(rows, cols)

        return reduce(s2, (1,)), (rows,), expand


@dataclass
class LayerBlocks:
    """One layer's blocks: the weight's shape, the block scores (1-D), the block grid's shape, the per-layer bounds
    in blocks, and how to turn pruned blocks into a keep-mask of the weight's shape."""

    name: str
    shape: tuple[int, ...]
    blocks: Tensor
    grid: tuple[int, ...]
    expand: Callable[[Tensor], Tensor]
    lo: int
    hi: int

    @property
    def size(self) -> int:
        return self.blocks.numel()


class Pattern:
    """Turns scores into keep-masks (bool, True = kept) at a target sparsity.

    Args:
        pattern: a registered tiling's syntax: ``"NxM"``, ``"N:M"`` or ``"channel"``.
        scope: the wave-1 alias of the distribution: ``"global"`` or ``"local"`` (= ``uniform``); None: unset.
        block_reduce: how an NxM block's or a channel's element scores become one score: mean, sum or max.
        min_sparsity_ratio_per_op / max_sparsity_ratio_per_op: bounds on every layer's sparsity.
    """

    def __init__(
        self,
        pattern: str = "1x1",
        scope: str | None = None,
        block_reduce: str = "mean",
        min_sparsity_ratio_per_op: float = 0.0,
        max_sparsity_ratio_per_op: float = 0.98,
    ) -> None:
        self.pattern = str(pattern).strip()
        self.tiling = self.parse_tiling(self.pattern)
        if scope is not None and scope not in SCOPES:
            raise ConfigError("pattern.scope", scope, f"one of {', '.join(SCOPES)} (or distribution=...)")
        if block_reduce not in REDUCES:
            raise ConfigError("pattern.block_reduce", block_reduce, f"one of {', '.join(REDUCES)}")
        lo, hi = min_sparsity_ratio_per_op, max_sparsity_ratio_per_op
        if isinstance(lo, bool) or not isinstance(lo, (int, float)) or not 0.0 <= lo < 1.0:
            raise ConfigError("pattern.min_sparsity_ratio_per_op", lo, "a number in [0, 1)")
        if isinstance(hi, bool) or not isinstance(hi, (int, float)) or not 0.0 < hi <= 1.0:
            raise ConfigError("pattern.max_sparsity_ratio_per_op", hi, "a number in (0, 1]")
        if lo > hi:
            raise ConfigError(
                "pattern.min_sparsity_ratio_per_op", lo, f"<= pattern.max_sparsity_ratio_per_op ({hi})"
            )
        self.scope = scope
        self.block_reduce = block_reduce
        self.min_ratio = float(lo)
        self.max_ratio = float(hi)

    @staticmethod
    def parse_tiling(pattern: str) -> Tiling:
        text = str(pattern).strip().lower()
        for name in PATTERNS:
            if (tiling := PATTERNS.get(name).parse(text)) is not None:
                return tiling
        raise ConfigError("pattern.type", pattern, PATTERN_HELP)

    @staticmethod
    def parse(pattern: str) -> tuple[str, int, int]:
        """``"4x1"`` -> ("block", 4, 1); ``"2:4"`` -> ("nm", 2, 4); ``"channel"`` -> ("channel", 1, 0)."""
        t = Pattern.parse_tiling(pattern)
        return t.kind, t.n, t.m

    @property
    def kind(self) -> str:
        return self.tiling.kind

    @property
    def n(self) -> int:
        return self.tiling.n

    @property
    def m(self) -> int:
        return self.tiling.m

    # --- what a layer's shape allows ---
    @property
    def removable_fraction(self) -> float:
        """The most of a block the pattern removes: 1 for blocks and channels, (M - N) / M for N:M."""
        return self.tiling.removable_fraction

    @property
    def max_sparsity(self) -> float:
        """The highest sparsity this pattern with its per-op bound can reach."""
        return min(self.max_ratio, self.removable_fraction)

    def skip_reason(self, shape: torch.Size | tuple[int, ...]) -> str | None:
        """Why a weight of this shape cannot be tiled (None if it can)."""
        if len(shape) < 2:
            return f"a {len(shape)}-D weight has no rows and columns to tile"
        why = self.tiling.skip_reason(int(shape[0]), int(math.prod(shape[1:])))
        if why is not None and len(shape) > 2:  # a conv's columns: its kernel positions x its input channels
            why += f" (a {'x'.join(map(str, shape[2:]))} kernel x {shape[1]} input channels, input channels fastest)"
        return why

    def num_blocks(self, shape: torch.Size | tuple[int, ...]) -> int:
        return self.tiling.num_blocks(int(shape[0]), int(math.prod(shape[1:])))

    def grid(self, shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
        """The block grid of a weight of this shape (see :meth:`block_scores`)."""
        return self.tiling.grid(int(shape[0]), int(math.prod(shape[1:])))

    def block_bounds(self, num_blocks: int) -> tuple[int, int]:
        """The per-op bounds in blocks, ``(lo, hi)``: at least ``lo`` and at most ``hi`` of ``num_blocks`` pruned."""
        b, frac = num_blocks, self.removable_fraction
        lo = min(b, math.ceil(round_count(self.min_ratio * b / frac)))
        hi = min(b, math.floor(round_count(self.max_ratio * b / frac)))
        return lo, hi

    def block_sparsity(self, pruned_blocks: int, num_blocks: int) -> float:
        """The fraction of a layer's weights that ``pruned_blocks`` of its ``num_blocks`` blocks remove."""
        return pruned_blocks * self.removable_fraction / num_blocks if num_blocks else 0.0

    # --- units: the weights removed together ---
    @property
    def elementwise(self) -> bool:
        """True when every weight is removed on its own (1x1, N:M): each weight is its own unit."""
        return self.tiling.elementwise

    def unit_sums(self, t: Tensor) -> Tensor:
        """``t`` (a weight-shaped tensor) summed over each unit the pattern removes together (an NxM block, an
        output channel), broadcast back to the weight's shape, in the 2-D view's order."""
        if self.elementwise:
            return t
        return from_2d(self.tiling.unit_sums(as_2d(t)), t.shape)

    # --- scores -> blocks ---
    def _reduce(self, t: Tensor, dims: tuple[int, ...]) -> Tensor:
        if self.block_reduce == "mean":
            return t.mean(dim=dims)
        if self.block_reduce == "sum":
            return t.sum(dim=dims)
        return t.amax(dim=dims)

    def layer_blocks(self, name: str, score: Tensor) -> LayerBlocks:
        """One layer's block scores, bounds and mask expansion."""
        shape = score.shape
        blocks, grid, expand2d = self.tiling.blocks(as_2d(score.float()), self._reduce)
        lo, hi = self.block_bounds(blocks.numel())
        return LayerBlocks(name, tuple(shape), blocks, grid, lambda pruned: from_2d(expand2d(pruned), shape), lo, hi)

    @torch.no_grad()
    def block_scores(self, scores: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """What the masks rank: every layer's block scores after the pattern's reduction, in the block grid's shape
        (NxM: ``[rows / N, cols / M]``; N:M: ``[rows, cols / M]``, a group's score being the mean of the weights N:M
        would remove; channel: ``[rows]``), over the 2-D view."""
        out = {}
        for name, s in scores.items():
            lay = self.layer_blocks(name, s)
            out[name] = lay.blocks.reshape(lay.grid)
        return out

    def block_target(self, target: float, num_blocks: int) -> int:
        """How many of ``num_blocks`` blocks a target sparsity prunes (see the module docstring)."""
        return min(num_blocks, math.floor(round_count(target * num_blocks / self.removable_fraction)))

    # --- the masks ---
    @torch.no_grad()
    def masks(self, scores: Mapping[str, Tensor], target: float, distribution: object = None) -> dict[str, Tensor]:
        """Keep-masks (bool, the weights' shapes) pruning the lowest-scored blocks to ``target``, split over the
        layers by ``distribution`` (a :class:`~prunelab.sparsity.distribution.Distribution` or its name; None:
        this pattern's ``scope`` alias, else ``global``)."""
        from .distribution import resolve_distribution

        dist = resolve_distribution(distribution, self.scope)
        layers = [self.layer_blocks(name, s) for name, s in scores.items()]
        if not layers:
            return {}
        pruned = dist.prune(layers, target, self)
        return {lay.name: lay.expand(p) for lay, p in zip(layers, pruned)}

    def __repr__(self) -> str:
        scope = f", scope={self.scope!r}" if self.scope is not None else ""
        return (
            f"Pattern({self.pattern!r}{scope}, block_reduce={self.block_reduce!r}, "
            f"min_sparsity_ratio_per_op={self.min_ratio}, max_sparsity_ratio_per_op={self.max_ratio})"
        )
