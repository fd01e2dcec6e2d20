"""Sparsity structure: patterns (how a weight is cut into blocks), selection (exact-count k-th selection) and
distributions (how a target is split over layers)."""
from .distribution import DISTRIBUTIONS, Distribution, build_distribution, resolve_distribution
from .patterns import PATTERNS, LayerBlocks, Pattern, Tiling, as_2d, from_2d
from .selection import kept_in_groups, kth_smallest_np, lowest_k

__all__ = [
    "DISTRIBUTIONS", "Distribution", "LayerBlocks", "PATTERNS", "Pattern", "Tiling", "as_2d", "build_distribution",
    "from_2d", "kept_in_groups", "kth_smallest_np", "lowest_k", "resolve_distribution",
]
