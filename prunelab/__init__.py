"""prunelab: compare neural-network pruning criteria.

The core (usable without Hydra or W&B): :mod:`prunelab.criteria` (what a weight is worth), :mod:`prunelab.sparsity`
(patterns, exact-count selection, distributions over layers), :mod:`prunelab.schedule` (when, to which target),
:mod:`prunelab.regrowth` (mask updaters that grow) and :class:`prunelab.pruner.Pruner`, which joins them behind five
training hooks.
"""
from .criteria import (
    CRITERIA,
    GradientCriterion,
    MagnitudeCriterion,
    PruningCriterion,
    RandomCriterion,
    ScoreHook,
    SnipCriterion,
    SnipMomentumCriterion,
    get_criterion,
    register_criterion,
)
from .errors import ConfigError
from .layers import select_layers
from .pruner import Pruner
from .regrowth import MaskUpdater
from .schedule import Schedule
from .sparsity import DISTRIBUTIONS, Distribution, Pattern

__version__ = "0.1.0"
__all__ = [
    "CRITERIA", "ConfigError", "DISTRIBUTIONS", "Distribution", "GradientCriterion", "MagnitudeCriterion",
    "MaskUpdater", "Pattern", "Pruner", "PruningCriterion", "RandomCriterion", "ScoreHook", "Schedule",
    "SnipCriterion", "SnipMomentumCriterion", "get_criterion", "register_criterion", "select_layers",
]
