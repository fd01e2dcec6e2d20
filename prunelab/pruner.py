"""The pruner: owns the masks and joins criterion, pattern and schedule behind five hooks.

Any training loop can drive it (the trainer is one client)::

    pruner.on_train_begin()
    for step, (x, y) in enumerate(batches):
        pruner.on_step_begin(step)          # scores; at a pruning step: new masks, applied
        loss = loss_fn(model(x), y); loss.backward()
        pruner.on_before_optimizer_step()   # gradient-based scores (gradients are here)
        optimizer.step()
        pruner.on_after_optimizer_step()    # masks re-applied: pruned weights stay exactly 0
    pruner.on_train_end()

Masks are re-applied after every optimizer step, so momentum, weight decay or Adam's moments cannot revive a
pruned weight. Scores are computed only when a pruning or score-logging step needs them (every step for a
criterion with history, such as snip_momentum).
"""
from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .criteria import PruningCriterion, config_to_dict, get_criterion
from .errors import ConfigError
from .patterns import Pattern
from .schedule import Schedule

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
) -> tuple[dict[str, nn.Module], list[LayerInfo]]:
    """Choose the layers to prune: op type in ``op_types``, name matching an ``include`` glob (all if empty),
    no ``exclude`` glob, not the classifier ``head``, and a shape the pattern can tile.

    Returns the chosen layers and a table of every layer with a weight of 2 or more dimensions, pruned or
    skipped with its reason. Globs that match no candidate layer are errors (a typo would silently prune
    something else).
    """
    include, exclude, op_types = _as_list(include), _as_list(exclude), _as_list(op_types)
    chosen: dict[str, nn.Module] = {}
    table: list[LayerInfo] = []
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
            log.warning("prunelab: layer %s %s skipped: %s (pattern %s)", name, list(shape), why, pattern.pattern)
            skip(why)
        else:
            chosen[name] = mod
            table.append(LayerInfo(name, op, shape, True))
    for key, globs in (("prune.include", include), ("prune.exclude", exclude)):
        for glob in globs:
            if not any(fnmatch.fnmatchcase(c, glob) for c in candidates):
                raise ConfigError(key, glob, f"a name glob matching some of the layers {candidates}")
    if not chosen:
        raise ConfigError(
            "prune.include", include or None, f"settings that leave at least one layer to prune; layers: {candidates}"
        )
    return chosen, table


def check_compatible(criterion: type[PruningCriterion], pattern: Pattern, schedule: Schedule) -> None:
    """Errors that come from combining a criterion, a pattern and a schedule (each is valid alone)."""
    name = criterion.name
    if criterion.needs_gradients and schedule.end_step == 0:
        raise ConfigError(
            "schedule.end_step", 0,
            f"criterion {name} scores from gradients, so it needs training steps first: end_step >= 1",
        )
    if criterion.needs_gradients and schedule.start_step == 0 and schedule.initial_sparsity > 0:
        raise ConfigError(
            "schedule.start_step", 0,
            f"criterion {name} has no gradients at step 0 to prune initial_sparsity "
            f"{schedule.initial_sparsity}: start_step >= 1",
        )
    if schedule.target_sparsity > pattern.max_sparsity + 1e-12:
        raise ConfigError(
            "schedule.target_sparsity", schedule.target_sparsity,
            f"<= {pattern.max_sparsity:g}, the most pattern {pattern.pattern} with "
            f"max_sparsity_ratio_per_op={pattern.max_ratio} can remove",
        )


class Pruner:
    """Masks, criterion, pattern and schedule behind the five training hooks.

    Args:
        model: an ``nn.Module`` (layers are chosen by ``op_types`` / ``include`` / ``exclude`` / ``head``) or a
            mapping name -> layer (or weight tensor) to prune as given.
        criterion: a registered name, a config (``criterion_type`` + parameters) or a built criterion.
        pattern: a pattern string (``"1x1"``, ``"4x1"``, ``"2:4"``, ``"channel"``), a config with ``type`` and
            ``scope`` etc., or a :class:`Pattern`.
        schedule: a :class:`Schedule` or its config.
        log_scores_every: also compute scores every N steps (for logging them); 0 = only at pruning steps.
    """

    def __init__(
        self,
        model: nn.Module | Mapping[str, nn.Module | Tensor],
        criterion: str | Mapping[str, Any] | PruningCriterion | Any = "magnitude",
        pattern: str | Mapping[str, Any] | Pattern = "1x1",
        schedule: Schedule | Mapping[str, Any] | None = None,
        *,
        op_types: Sequence[str] = DEFAULT_OP_TYPES,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        head: str | None = None,
        log_scores_every: int = 0,
    ) -> None:
        self.pattern = pattern if isinstance(pattern, Pattern) else build_pattern(pattern)
        self.schedule = schedule if isinstance(schedule, Schedule) else Schedule.from_config(schedule or {})
        if isinstance(model, nn.Module):
            modules, self.table = select_layers(model, self.pattern, op_types, include, exclude, head)
        else:
            modules, self.table = {}, []
            for name, mod in model.items():
                w = mod if isinstance(mod, Tensor) else mod.weight
                why = self.pattern.skip_reason(w.shape)
                self.table.append(LayerInfo(name, type(mod).__name__, tuple(w.shape), why is None, why or ""))
                if why is None:
                    modules[name] = mod
                else:
                    log.warning("prunelab: layer %s %s skipped: %s", name, list(w.shape), why)
            if not modules:
                raise ConfigError("modules", list(model), "at least one layer the pattern can tile")
        if isinstance(criterion, PruningCriterion):
            self.criterion = criterion
        else:
            self.criterion = get_criterion(criterion, modules)
        if not isinstance(log_scores_every, int) or log_scores_every < 0:
            raise ConfigError("tracking.log_scores_every", log_scores_every, "an integer >= 0 (0 = pruning steps only)")
        self.log_scores_every = log_scores_every
        check_compatible(type(self.criterion), self.pattern, self.schedule)

        self.names: list[str] = list(self.criterion.names)
        self._weights: list[Tensor] = list(self.criterion.weights)
        self.masks: dict[str, Tensor] = {
            n: torch.ones(w.shape, dtype=torch.bool, device=w.device) for n, w in zip(self.names, self._weights)
        }
        self._active: list[int] = []  # indices of layers with at least one pruned weight
        self.step: int = -1
        self.target: float = 0.0  # the target of the last pruning step
        self.pruned_at_step: bool = False

    # --- construction helpers ---
    @classmethod
    def from_config(cls, model: nn.Module, cfg: Any, head: str | None = None) -> "Pruner":
        """Build from the app's config (sections ``criterion``, ``pattern``, ``schedule``, ``prune``)."""
        prune = config_to_dict(cfg.get("prune"))
        tracking = config_to_dict(cfg.get("tracking"))
        return cls(
            model,
            criterion=cfg.criterion,
            pattern=cfg.pattern,
            schedule=cfg.schedule,
            op_types=prune.get("op_types", DEFAULT_OP_TYPES),
            include=prune.get("include") or (),
            exclude=prune.get("exclude") or (),
            head=head if prune.get("exclude_head", True) else None,
            log_scores_every=int(tracking.get("log_scores_every", 0) or 0),
        )

    # --- the five hooks ---
    def on_train_begin(self) -> None:
        """Apply the masks (all-True unless restored from a checkpoint)."""
        self.apply_masks()

    def on_step_begin(self, step: int | None = None) -> None:
        """Start of step ``step`` (default: the next one): scores if due; at a pruning step, new masks."""
        self.step = self.step + 1 if step is None else int(step)
        self.pruned_at_step = False
        if self.criterion.score_hook == "on_step_begin" and self._scores_due(self.step):
            self.criterion.on_step_begin()
        if self.schedule.is_pruning_step(self.step):
            self.update_masks(self.schedule.target(self.step))
            self.pruned_at_step = True

    def on_before_optimizer_step(self) -> None:
        """After backward: gradient-based criteria score now (for the next step's use)."""
        if self.criterion.score_hook == "on_before_optimizer_step" and self._grad_scores_due():
            self.criterion.on_before_optimizer_step()

    def on_after_optimizer_step(self) -> None:
        """After the optimizer step: re-apply the masks so pruned weights are exactly 0 again."""
        if self.criterion.score_hook == "on_after_optimizer_step" and self._grad_scores_due():
            self.criterion.on_after_optimizer_step()
        self.apply_masks()

    def on_train_end(self) -> None:
        self.apply_masks()

    # --- when scores are needed ---
    def score_step(self, step: int) -> bool:
        """True where the scores are used or logged: pruning steps and every ``log_scores_every`` steps."""
        logged = self.log_scores_every > 0 and step % self.log_scores_every == 0
        return logged or self.schedule.is_pruning_step(step)

    def _scores_due(self, step: int) -> bool:
        return self.criterion.stateful or self.score_step(step)

    def _grad_scores_due(self) -> bool:
        if self.criterion.stateful:  # history: every step until the masks are final (or while logging)
            return self.step < self.schedule.end_step or self.log_scores_every > 0
        return self.score_step(self.step + 1)

    # --- masks ---
    @torch.no_grad()
    def update_masks(self, target: float) -> None:
        """Recompute every mask from the current scores at ``target`` sparsity and apply them."""
        new = self.pattern.masks(self.criterion.scores, target)
        for name, mask in new.items():
            self.masks[name].copy_(mask)
        self.target = float(target)
        self._refresh_active()
        self.apply_masks()

    def _refresh_active(self) -> None:
        kept = torch.stack([torch.count_nonzero(m) for m in self.masks.values()]).tolist()
        self._active = [i for i, (k, m) in enumerate(zip(kept, self.masks.values())) if k < m.numel()]
        self._active_w = [self._weights[i] for i in self._active]
        # uint8 views of the bool masks (no copy): float * uint8 takes torch's fast path, float * bool does not
        self._active_m = [self.masks[self.names[i]].view(torch.uint8) for i in self._active]

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Zero every pruned weight (in place; only layers with pruned weights are touched)."""
        if self._active:
            torch._foreach_mul_(self._active_w, self._active_m)

    # --- reporting ---
    def layers(self) -> list[LayerInfo]:
        """Every candidate layer, pruned or skipped with the reason."""
        return list(self.table)

    @torch.no_grad()
    def sparsity(self) -> dict[str, Any]:
        """Actual sparsity counted from zeros in the weights (not from the target): per layer and overall."""
        zeros = [w.numel() - n for w, n in zip(self._weights, torch.stack([torch.count_nonzero(w) for w in self._weights]).tolist())]
        sizes = [w.numel() for w in self._weights]
        total, nz = sum(sizes), sum(zeros)
        return {
            "overall": nz / total,
            "zeros": int(nz),
            "total": int(total),
            "layers": {n: z / s for n, z, s in zip(self.names, zeros, sizes)},
        }

    def mask_sparsity(self) -> dict[str, float]:
        """Fraction of pruned entries per mask."""
        kept = torch.stack([torch.count_nonzero(m) for m in self.masks.values()]).tolist()
        return {n: 1.0 - k / m.numel() for (n, m), k in zip(self.masks.items(), kept)}

    # --- checkpoints ---
    def state_dict(self) -> dict[str, Any]:
        """Masks, criterion state, step and last target: enough to continue exactly."""
        return {
            "step": self.step,
            "target": self.target,
            "masks": {n: m.clone() for n, m in self.masks.items()},
            "criterion": self.criterion.state_dict(),
            "criterion_type": self.criterion.name,
        }

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        masks = state["masks"]
        if list(masks) != self.names or any(masks[n].shape != self.masks[n].shape for n in self.names):
            raise ConfigError(
                "checkpoint.pruner.masks", list(masks), f"masks for exactly the pruned layers {self.names}"
            )
        if state.get("criterion_type", self.criterion.name) != self.criterion.name:
            raise ConfigError(
                "checkpoint.pruner.criterion_type", state.get("criterion_type"),
                f"the criterion of this run ({self.criterion.name})",
            )
        for n in self.names:
            self.masks[n].copy_(masks[n])
        self.criterion.load_state_dict(state.get("criterion", {}))
        self.step = int(state["step"])
        self.target = float(state.get("target", 0.0))
        self._refresh_active()
        self.apply_masks()

    def describe(self) -> str:
        """A table of every candidate layer: shape, parameters, pruned or skipped (why)."""
        rows = [f"{'layer':<28} {'type':<8} {'shape':<20} {'params':>9}  status"]
        for li in self.table:
            status = "pruned" if li.pruned else f"skipped: {li.reason}"
            rows.append(f"{li.name:<28} {li.op_type:<8} {str(list(li.shape)):<20} {li.numel:>9}  {status}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        pruned = [li.name for li in self.table if li.pruned]
        skipped = [f"{li.name} ({li.reason})" for li in self.table if not li.pruned]
        return (
            f"Pruner(criterion={self.criterion.name}, {self.pattern!r}, {self.schedule!r},\n"
            f"  pruned={pruned},\n  skipped={skipped})"
        )


def build_pattern(cfg: str | Mapping[str, Any] | Any) -> Pattern:
    if isinstance(cfg, str):
        return Pattern(cfg)
    d = config_to_dict(cfg)
    allowed = ("type", "scope", "block_reduce", "min_sparsity_ratio_per_op", "max_sparsity_ratio_per_op")
    kwargs = {k: d[k] for k in allowed if k in d}
    if "type" in kwargs:
        kwargs["pattern"] = kwargs.pop("type")
    return Pattern(**kwargs)
