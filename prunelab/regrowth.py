"""Mask updaters that may grow weights back (dynamic sparse training), and the optimizer-state surgery they need.

A :class:`MaskUpdater` changes the masks at its own update steps (after the schedule's pruning, or instead of it):
it may turn pruned weights back on. The pruner then sets grown weights to exactly 0 and, when the updater asks
for it (:attr:`MaskUpdater.resets_grown_state`), zeroes their optimizer state (SGD momentum buffers, Adam's
first and second moments: every per-parameter state tensor of the weight's shape) through
:func:`reset_optimizer_state`, so a grown weight starts from scratch. Masks are then no longer monotone: the
pruner counts the weights whose mask flipped at each update (``masks/changed``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .registry import Registry

if TYPE_CHECKING:
    from .pruner import Pruner

UPDATERS: Registry[type["MaskUpdater"]] = Registry("regrowth.name")


class MaskUpdater:
    """Changes masks at its update steps. Subclasses implement :meth:`is_update_step` and :meth:`update`."""

    name: str = ""
    paper: str = ""
    #: Zero the optimizer state of weights whose mask turns on (the regrowth methods' rule).
    resets_grown_state: bool = True

    def is_update_step(self, step: int) -> bool:
        return False

    @property
    def last_step(self) -> int:
        """The last step at which this updater may change masks (scores are kept up to date until then)."""
        return -1

    def update(self, pruner: "Pruner", step: int) -> dict[str, Tensor]:
        """New keep-masks (bool, the weights' shapes) for every pruned layer; the pruner applies them."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore after a resume (e.g. an RNG's state)."""


@torch.no_grad()
def reset_optimizer_state(optimizer: torch.optim.Optimizer | None, grown: Mapping[Tensor, Tensor]) -> int:
    """Zero, for every parameter in ``grown`` (parameter -> bool mask of its grown entries), the entries of each of
    its optimizer state tensors that have the parameter's shape (SGD ``momentum_buffer``; Adam/AdamW ``exp_avg``,
    ``exp_avg_sq``, ``max_exp_avg_sq``). Scalar state (Adam's ``step``) is left alone. Returns the number of state
    tensors touched."""
    if optimizer is None:
        return 0
    touched = 0
    for param, mask in grown.items():
        for value in optimizer.state.get(param, {}).values():
            if isinstance(value, Tensor) and value.shape == param.shape:
                value.masked_fill_(mask.to(value.device), 0)
                touched += 1
    return touched
