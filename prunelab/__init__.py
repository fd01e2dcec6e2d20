"""prunelab: compare neural-network pruning criteria.

The core (usable without Hydra or W&B): :mod:`prunelab.criteria`, :mod:`prunelab.patterns`,
:mod:`prunelab.schedule` and :class:`prunelab.pruner.Pruner`.
"""
from .criteria import (
    CRITERIA,
    GradientCriterion,
    MagnitudeCriterion,
    PruningCriterion,
    RandomCriterion,
    SnipCriterion,
    SnipMomentumCriterion,
    get_criterion,
    register_criterion,
)
from .errors import ConfigError
from .patterns import Pattern
from .pruner import Pruner, select_layers
from .schedule import Schedule

__version__ = "0.1.0"
__all__ = [
    "CRITERIA", "ConfigError", "GradientCriterion", "MagnitudeCriterion", "Pattern", "Pruner", "PruningCriterion",
    "RandomCriterion", "Schedule", "SnipCriterion", "SnipMomentumCriterion", "get_criterion", "register_criterion",
    "select_layers",
]
