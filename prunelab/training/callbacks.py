"""Callbacks: what the training loop calls at every point of a step. Pruning, tracking and checkpointing are
callbacks; the loop knows none of them.

Order matters and is the list's: pruning first (its masks and scores are what tracking logs), then tracking,
then checkpointing (the tracker's state at the end of a step goes into that step's checkpoint).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ..errors import ConfigError
from . import distributed
from .fused_step import FP16_REFUSAL, FusedStep

if TYPE_CHECKING:
    from ..pruner import Pruner
    from ..tracking.base import Tracker
    from .trainer import Loop


class Callback:
    """A no-op at every point; subclasses override what they need. ``state_key`` names the callback's state in a
    checkpoint (None: it has none)."""

    state_key: str | None = None

    def on_train_begin(self, loop: "Loop") -> None:
        """After set-up and any resume, before the first step."""

    def on_step_begin(self, loop: "Loop", step: int, metrics: dict[str, Any]) -> None:
        """Before forward; ``metrics`` collects what this step logs."""

    def on_before_optimizer_step(self, loop: "Loop") -> None:
        """After backward (gradients are here), before the optimizer step."""

    def on_after_optimizer_step(self, loop: "Loop") -> None:
        """After the optimizer and lr steps."""

    def on_step_end(self, loop: "Loop", step: int, metrics: dict[str, Any]) -> None:
        """After the step's train and eval metrics are in ``metrics``."""

    def on_train_end(self, loop: "Loop", summary: dict[str, Any]) -> None:
        """After the last step; may add to the run's ``summary``."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from a checkpoint's ``state[state_key]``."""


class Callbacks(Callback):
    """Several callbacks, called in order; their states are gathered by ``state_key``."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_train_begin(self, loop: "Loop") -> None:
        for cb in self.callbacks:
            cb.on_train_begin(loop)

    def on_step_begin(self, loop: "Loop", step: int, metrics: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_step_begin(loop, step, metrics)

    def on_before_optimizer_step(self, loop: "Loop") -> None:
        for cb in self.callbacks:
            cb.on_before_optimizer_step(loop)

    def on_after_optimizer_step(self, loop: "Loop") -> None:
        for cb in self.callbacks:
            cb.on_after_optimizer_step(loop)

    def on_step_end(self, loop: "Loop", step: int, metrics: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_step_end(loop, step, metrics)

    def on_train_end(self, loop: "Loop", summary: dict[str, Any]) -> None:
        for cb in self.callbacks:
            cb.on_train_end(loop, summary)

    def state_dict(self) -> dict[str, Any]:
        return {cb.state_key: cb.state_dict() for cb in self.callbacks if cb.state_key}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for cb in self.callbacks:
            if cb.state_key:
                cb.load_state_dict(state.get(cb.state_key, {}))


def sparsity_metrics(pruner: "Pruner") -> dict[str, float]:
    """``sparsity/target``, ``sparsity/actual`` (zeros in the weights), ``sparsity/masked`` (what the masks remove),
    and per layer ``sparsity/<layer>`` (zeros) and ``sparsity/masked/<layer>`` (masks): the two differ where kept
    weights are exactly 0, e.g. just grown back (regrowth keeps each layer's masked sparsity constant)."""
    sp = pruner.sparsity()
    out = {"sparsity/target": pruner.target, "sparsity/actual": sp["overall"],
           "sparsity/masked": pruner.masked_fraction()}
    out.update({f"sparsity/{name}": v for name, v in sp["layers"].items()})
    out.update({f"sparsity/masked/{name}": v for name, v in pruner.mask_sparsity().items()})
    return out


class PruningCallback(Callback):
    """Drives a :class:`~prunelab.pruner.Pruner` through the loop: binds it to the model, optimizer and calibration
    data, calls its five hooks, logs the sparsities at pruning and evaluation steps (and ``masks/changed`` where
    masks change), and adds the final sparsities to the summary. Every access to the pruner goes through here."""

    state_key = "pruner"

    def __init__(self, pruner: "Pruner", check_masks: bool = False, fused_step: bool = False) -> None:
        self.pruner = pruner
        self.check_masks = check_masks
        self.fused_step = fused_step

    def on_train_begin(self, loop: "Loop") -> None:
        self.pruner.bind(model=loop.model, optimizer=loop.optimizer, calibration=loop.calibration)
        if self.fused_step:
            if loop.precision is not None and loop.precision.scaler is not None:
                raise ConfigError("trainer.fused_step", True, FP16_REFUSAL)
            self.pruner.bind(fused_step=FusedStep(loop.optimizer, list(self.pruner.weights)))
        self.pruner.on_train_begin()

    def on_step_begin(self, loop: "Loop", step: int, metrics: dict[str, Any]) -> None:
        self.pruner.on_step_begin(step)
        if self.pruner.pruned_at_step:
            metrics.update(sparsity_metrics(self.pruner))
            metrics["masks/changed"] = sum(self.pruner.changed.values())
            if self.pruner.updater is not None:  # regrowth churn, per layer
                metrics.update({f"masks/changed/{n}": c for n, c in self.pruner.changed.items()})
            if self.check_masks:
                distributed.check_masks_equal(self.pruner.masks, step)

    def on_before_optimizer_step(self, loop: "Loop") -> None:
        self.pruner.on_before_optimizer_step()

    def on_after_optimizer_step(self, loop: "Loop") -> None:
        self.pruner.on_after_optimizer_step()
        if self.pruner.fused_step is not None:
            loop.compile_s = self.pruner.fused_step.compile_s

    def on_step_end(self, loop: "Loop", step: int, metrics: dict[str, Any]) -> None:
        if "eval/acc" in metrics and "sparsity/actual" not in metrics:
            metrics.update(sparsity_metrics(self.pruner))

    def on_train_end(self, loop: "Loop", summary: dict[str, Any]) -> None:
        self.pruner.on_train_end()
        sp = self.pruner.sparsity()
        summary.update({
            "sparsity/target": self.pruner.schedule.target_sparsity, "sparsity/actual": sp["overall"],
            "sparsity/masked": self.pruner.masked_fraction(), "sparsity/layers": sp["layers"],
            # weights over weights kept, exactly (1 / (1 - s) of the rounded fraction read 19.999999999999982 for 20x)
            "compression": sp["total"] / max(sp["total"] - sp["zeros"], 1e-12),
            "pruned_params": sp["total"], "pruned_zeros": sp["zeros"],
        })
        targets = self.pruner.layer_targets()  # what the distribution gave each layer (None: global ranking)
        if targets is not None:
            summary["sparsity/layer_targets"] = targets

    # --- what tracking asks of the pruner ---
    def request_scores(self, every: int) -> None:
        self.pruner.request_scores(every)

    def scores_at(self, step: int) -> dict[str, Tensor] | None:
        """The criterion's scores where this step computed them (pruning, mask-update or requested steps)."""
        return self.pruner.criterion.scores if self.pruner.score_step(step) else None

    def state_dict(self) -> dict[str, Any]:
        return self.pruner.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.pruner.load_state_dict(state)


class TrackingCallback(Callback):
    """Reports to a :class:`~prunelab.tracking.base.Tracker`: every step's metrics, and the criterion's scores at
    pruning steps and every ``log_scores_every`` steps (score logging is tracking's decision; the pruning
    callback computes the scores it asks for)."""

    state_key = "tracker"

    def __init__(self, tracker: "Tracker", pruning: PruningCallback | None = None, log_scores_every: int = 0) -> None:
        self.tracker = tracker
        self.pruning = pruning
        if pruning is not None and log_scores_every:
            pruning.request_scores(log_scores_every)

    def on_step_begin(self, loop: "Loop", step: int, metrics: dict[str, Any]) -> None:
        if self.pruning is not None and (scores := self.pruning.scores_at(step)) is not None:
            self.tracker.log_scores(scores, step)

    def on_step_end(self, loop: "Loop", step: int, metrics: dict[str, Any]) -> None:
        if metrics:
            self.tracker.log(metrics, step)

    def state_dict(self) -> dict[str, Any]:
        return self.tracker.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.tracker.load_state_dict(state)


class CheckpointCallback(Callback):
    """Writes a checkpoint every ``every`` steps (0: only the last step's, which is always written). ``every``
    None: at every evaluation (``eval_every``), or every 10% of training where there is none, so a killed run
    never loses more than that."""

    def __init__(self, every: int | None, eval_every: int = 0) -> None:
        self.requested = every
        self.eval_every = int(eval_every or 0)
        self.every = int(every or 0)

    def on_train_begin(self, loop: "Loop") -> None:
        if self.requested is None:
            self.every = self.eval_every or max(1, loop.total // 10)

    def on_step_end(self, loop: "Loop", step: int, metrics: dict[str, Any]) -> None:
        if (self.every and (step + 1) % self.every == 0) or step + 1 == loop.total:
            loop.checkpoint(step)
