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
from .lamp import LampCriterion
from .magnitude import MagnitudeCriterion
from .movement import MovementCriterion
from .random import RandomCriterion
from .snip import SnipCriterion, SnipMomentumCriterion
from .taylor import TaylorCriterion
from .wanda import WandaCriterion

__all__ = [
    "CRITERIA", "Calibration", "GradientCriterion", "LampCriterion", "MagnitudeCriterion", "MovementCriterion",
    "PruningCriterion", "RandomCriterion", "ScoreHook", "SnipCriterion", "SnipMomentumCriterion", "TaylorCriterion",
    "WandaCriterion", "check_declaration", "config_to_dict", "get_criterion", "register_criterion",
]
