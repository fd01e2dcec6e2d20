"""Pruning criteria: how important each weight is. One module per family; importing this package registers
them all. The contract (``PruningCriterion``, ``register_criterion``, ``get_criterion``, :class:`ScoreHook`) is in
:mod:`prunelab.criteria.base`."""
from .base import (
    CRITERIA,
    Calibration,
    PruningCriterion,
    ScoreHook,
    check_declaration,
    config_to_dict,
    get_criterion,
    register_criterion,
)
from .gradient import GradientCriterion
from .magnitude import MagnitudeCriterion
from .random import RandomCriterion
from .snip import SnipCriterion, SnipMomentumCriterion

__all__ = [
    "CRITERIA", "Calibration", "GradientCriterion", "MagnitudeCriterion", "PruningCriterion", "RandomCriterion",
    "ScoreHook", "SnipCriterion", "SnipMomentumCriterion", "check_declaration", "config_to_dict", "get_criterion",
    "register_criterion",
]
