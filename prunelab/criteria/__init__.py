"""Pruning criteria: how important each weight is. One module per family; importing this package registers
them all (pruning at initialization: :mod:`~prunelab.criteria.at_init`; the sanity ablations of any criterion,
``criterion.ablation``: :mod:`~prunelab.criteria.ablations`). The contract (``PruningCriterion``,
``register_criterion``, ``get_criterion``, :class:`ScoreHook`) is in :mod:`prunelab.criteria.base`."""
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
from .ablations import ABLATIONS, Ablation, get_ablation
from .at_init import GraspAbsCriterion, GraspCriterion, SnipInitCriterion, SynFlowCriterion
from .gradient import GradientCriterion
from .lamp import LampCriterion
from .magnitude import MagnitudeCriterion
from .movement import MovementCriterion
from .random import RandomCriterion
from .snip import SnipCriterion, SnipMomentumCriterion
from .taylor import TaylorCriterion
from .wanda import WandaCriterion

__all__ = [
    "ABLATIONS", "Ablation", "CRITERIA", "Calibration", "GradientCriterion", "GraspAbsCriterion", "GraspCriterion",
    "LampCriterion", "MagnitudeCriterion", "MovementCriterion", "PruningCriterion", "RandomCriterion", "ScoreHook",
    "SnipCriterion", "SnipInitCriterion", "SnipMomentumCriterion", "SynFlowCriterion", "TaylorCriterion",
    "WandaCriterion", "check_declaration", "config_to_dict", "get_ablation", "get_criterion", "register_criterion",
]
