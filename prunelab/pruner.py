"""The pruner: owns the masks and joins criterion, pattern, distribution and schedule behind five hooks.

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
pruned weight: between steps every pruned weight is 0, and a mask updater's change writes only the entries that
flip (a weight written from outside between steps is masked after the next optimizer step). Scores are computed
only when a pruning step, a mask update or a requested score-logging step needs them (every step for a criterion
with history, such as snip_momentum).

Model-level criteria (``score_hook = model``) score with passes of their own at pruning steps: the pruner calls
``criterion.score_model(model, batches)`` with the calibration batches it was given (:meth:`Pruner.bind`), in
``criterion.rounds`` rounds that each re-score the masked network (round k of n moves the kept fraction
geometrically from the last target's to this one's), inside a sandbox that restores the model's buffers (BatchNorm
statistics), gradients, train/eval mode and the RNG, so scoring never changes the training that follows.

A mask updater (:mod:`prunelab.regrowth`) may turn weights back on at its update steps; grown weights are set to
0 and, where the updater says so, their optimizer state is zeroed.

An ablation (``criterion.ablation``, :mod:`prunelab.criteria.ablations`) changes what a pruning step ranks
(``invert``), its final masks (``shuffle``) or the kept weights' values (``reinit``, whose optimizer state is
zeroed); the criterion's scores themselves are left as they are.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

import torch
from torch import Tensor, nn

from .criteria.ablations import Ablation, check_ablation, get_ablation
from .criteria.base import CRITERIA, Calibration, PruningCriterion, ScoreHook, get_criterion
from .errors import ConfigError
from .layers import DEFAULT_OP_TYPES, LayerInfo, select_layers
from .options import config_to_dict
from .regrowth import MaskChange, MaskUpdater, reset_optimizer_state
from .schedule import Schedule
from .sparsity.distribution import Distribution, resolve_distribution
from .sparsity.patterns import Pattern
from .sparsity.maskops import count_true, fill_at_all, true_positions

if TYPE_CHECKING:
    from .training.fused_step import FusedStep

log = logging.getLogger("prunelab")

Batch = tuple[Tensor, Tensor]
CalibrationSource = Union[Callable[[Calibration], Iterable[Batch]], Iterable[Batch]]


def check_compatible(criterion: type[PruningCriterion], pattern: Pattern, schedule: Schedule,
                     distribution: Distribution | None = None) -> None:
    """Errors that come from combining a criterion, a pattern, a distribution and a schedule (each valid alone)."""
    name = criterion.name
    if criterion.needs_gradients and schedule.end_step == 0:
        raise ConfigError(
            "schedule.end_step", 0,
            f"criterion {name} scores from gradients, so it needs training steps first: end_step >= 1 "
            f"(or a criterion that scores at initialization with passes of its own, e.g. snip_init)",
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
    allowed = criterion.distributions
    if distribution is not None and allowed is not None and distribution.name not in allowed:
        why = f" ({criterion.distributions_reason})" if criterion.distributions_reason else ""
        raise ConfigError("distribution", distribution.name,
                          f"{' or '.join(allowed)} for criterion {name}{why}")
    if distribution is not None and (reason := distribution.check_pattern(pattern)) is not None:
        raise ConfigError("distribution", distribution.name,
                          f"{reason} (pattern.type={pattern.pattern})")


def build_pattern(cfg: str | Mapping[str, Any] | Any) -> Pattern:
    """A :class:`Pattern` from its string, its config (``type``, ``scope``, ``block_reduce``, per-op bounds) or itself."""
    if isinstance(cfg, Pattern):
        return cfg
    if isinstance(cfg, str):
        return Pattern(cfg)
    d = config_to_dict(cfg)
    allowed = ("type", "scope", "block_reduce", "min_sparsity_ratio_per_op", "max_sparsity_ratio_per_op")
    kwargs = {k: d[k] for k in allowed if k in d}
    if "type" in kwargs:
        kwargs["pattern"] = kwargs.pop("type")
    return Pattern(**kwargs)


class Pruner:
    """Masks, criterion, pattern, distribution and schedule behind the five training hooks.

    Args:
        model: an ``nn.Module`` (layers are chosen by ``op_types`` / ``include`` / ``exclude`` / ``head``) or a
            mapping name -> layer (or weight tensor) to prune as given.
        criterion: a registered name, a config (``criterion_type`` + parameters) or a built criterion.
        pattern: a pattern string (``"1x1"``, ``"4x1"``, ``"2:4"``, ``"channel"``), a config with ``type`` etc.,
            or a :class:`Pattern`.
        schedule: a :class:`Schedule` or its config.
        distribution: how the target is split over layers: ``"global"`` (one ranking), ``"uniform"`` (every layer
            at the target), another registered name (``erk``, ``er``, ``per_row``), its config or a built one.
            ``pattern.scope`` is its wave-1 alias (``local`` = ``uniform``). None: the criterion's
            ``default_distribution`` (wanda: ``per_row``), else ``global``.
        optimizer: the training optimizer (needed to reset the state of weights a mask updater grows).
        updater: a :class:`~prunelab.regrowth.MaskUpdater` that may change masks at its own steps.
        calibration: the batches model-level criteria score on: an iterable of ``(x, y)`` or a callable that takes
            the criterion's :class:`~prunelab.criteria.base.Calibration` request.
        ablation: an :class:`~prunelab.criteria.ablations.Ablation` or its name (None: the criterion config's
            ``ablation`` key, else ``none``); a name is seeded with 0 (:meth:`from_config` uses the run's seed).
    """

    def __init__(
        self,
        model: nn.Module | Mapping[str, nn.Module | Tensor],
        criterion: str | Mapping[str, Any] | PruningCriterion | Any = "magnitude",
        pattern: str | Mapping[str, Any] | Pattern = "1x1",
        schedule: Schedule | Mapping[str, Any] | None = None,
        *,
        distribution: str | Mapping[str, Any] | Distribution | None = None,
        op_types: Sequence[str] = DEFAULT_OP_TYPES,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        head: str | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        updater: MaskUpdater | None = None,
        calibration: CalibrationSource | None = None,
        ablation: str | Ablation | None = None,
    ) -> None:
        self.pattern = build_pattern(pattern)
        if distribution is None and self.pattern.scope is None:
            distribution = default_distribution(criterion)
        self.distribution = resolve_distribution(distribution, self.pattern.scope)
        self.schedule = schedule if isinstance(schedule, Schedule) else Schedule.from_config(schedule or {})
        self.model: nn.Module | None = model if isinstance(model, nn.Module) else None
        modules, self.table = self._select(model, op_types, include, exclude, head)
        self.criterion = criterion if isinstance(criterion, PruningCriterion) else get_criterion(criterion, modules)
        check_compatible(type(self.criterion), self.pattern, self.schedule, self.distribution)
        self.criterion.use_pattern(self.pattern)
        if not isinstance(ablation, Ablation):
            ablation = get_ablation(ablation or self.criterion.config.get("ablation"))
        check_ablation(ablation.name, len(self.schedule.steps))
        self.ablation = ablation
        self.updater = updater
        self.optimizer = optimizer
        self.calibration = calibration
        self._score_every: list[int] = []
        self.fused_step: FusedStep | None = None
        self._fused_now = False  # this step's pruned weights took the fused step (masks applied)

        self.names: list[str] = list(self.criterion.names)
        self._weights: list[Tensor] = list(self.criterion.weights)
        self.masks: dict[str, Tensor] = {
            n: torch.ones(w.shape, dtype=torch.bool, device=w.device) for n, w in zip(self.names, self._weights)
        }
        self._active: list[int] = []  # indices of layers with at least one pruned weight
        self.step: int = -1
        self.target: float = 0.0  # the target of the last pruning step
        self.pruned_at_step: bool = False  # masks changed at this step (a pruning step or a mask update)
        self.changed: dict[str, int] = {}  # weights whose mask flipped at the last mask change, per layer
        self._kept_at: dict[str, tuple[Tensor, int]] = {}  # kept positions set by position, with the mask's version

    def _select(self, model: nn.Module | Mapping[str, nn.Module | Tensor], op_types: Sequence[str],
                include: Sequence[str], exclude: Sequence[str], head: str | None,
                ) -> tuple[dict[str, nn.Module | Tensor], list[LayerInfo]]:
        if isinstance(model, nn.Module):
            return select_layers(model, self.pattern, op_types, include, exclude, head)  # type: ignore[return-value]
        modules: dict[str, nn.Module | Tensor] = {}
        table: list[LayerInfo] = []
        for name, mod in model.items():
            w = mod if isinstance(mod, Tensor) else mod.weight
            why = self.pattern.skip_reason(w.shape)
            table.append(LayerInfo(name, type(mod).__name__, tuple(w.shape), why is None, why or ""))
            if why is None:
                modules[name] = mod
            else:
                log.warning("prunelab: layer %s %s skipped: %s", name, list(w.shape), why)
        if not modules:
            raise ConfigError("modules", list(model), "at least one layer the pattern can tile")
        return modules, table

    # --- construction helpers ---
    @classmethod
    def from_config(cls, model: nn.Module, cfg: Any, head: str | None = None,
                    schedule: Schedule | None = None,
                    initializer: Callable[[], nn.Module] | None = None) -> "Pruner":
        """Build from the app's config (sections ``criterion``, ``pattern``, ``distribution``, ``schedule``,
        ``prune``; ``criterion.ablation`` seeded with ``seed``); ``schedule``: the schedule with its fractions
        resolved (default: read from the config); ``initializer`` builds a freshly initialised model of the same
        architecture (for ``criterion.ablation=reinit``)."""
        prune = config_to_dict(cfg.get("prune"))
        ablation = get_ablation(cfg.criterion.get("ablation"), seed=int(cfg.get("seed", 0) or 0),
                                initializer=initializer)
        return cls(
            model,
            criterion=cfg.criterion,
            pattern=cfg.pattern,
            schedule=schedule if schedule is not None else cfg.schedule,
            distribution=cfg.get("distribution"),
            op_types=prune.get("op_types", DEFAULT_OP_TYPES),
            include=prune.get("include") or (),
            exclude=prune.get("exclude") or (),
            head=head if prune.get("exclude_head", True) else None,
            ablation=ablation,
        )

    def bind(self, *, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
             calibration: CalibrationSource | None = None, updater: MaskUpdater | None = None,
             fused_step: FusedStep | None = None) -> "Pruner":
        """Give the pruner what a training run owns: the model (for model-level criteria), the optimizer (for the
        state of grown weights), the calibration batches, a mask updater (whose steps may depend on the
        training length), and a fused step of its weights (``trainer.fused_step``). Returns the pruner."""
        if fused_step is not None:
            if self.criterion.score_hook is ScoreHook.AFTER_OPTIMIZER_STEP:  # it reads the step before the masks
                raise ConfigError("trainer.fused_step", True, f"false with criterion={self.criterion.name} (it "
                                  "scores between the optimizer's step and the masks)")
            self.fused_step = fused_step
        if updater is not None:
            self.updater = updater
        if model is not None:
            self.model = model
        if optimizer is not None:
            self.optimizer = optimizer
        if calibration is not None:
            self.calibration = calibration
        return self

    @property
    def weights(self) -> list[Tensor]:
        """The pruned layers' weights, in :attr:`names`' order."""
        return self._weights

    def request_scores(self, every: int) -> None:
        """Also compute scores every ``every`` steps (e.g. to log their distribution); pruning steps always do."""
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ConfigError("tracking.log_scores_every", every, "an integer >= 1")
        self._score_every.append(every)

    # --- the five hooks ---
    def on_train_begin(self) -> None:
        """Apply the masks (all-True unless restored from a checkpoint); the updater's preparation."""
        self.apply_masks()
        if self.updater is not None:
            self.updater.prepare()

    def on_step_begin(self, step: int | None = None) -> None:
        """Start of step ``step`` (default: the next one): scores if due; at a pruning step, new masks; at an
        updater's step, the updated masks."""
        self.step = self.step + 1 if step is None else int(step)
        self.pruned_at_step = False
        hook = self.criterion.score_hook
        if hook is ScoreHook.STEP_BEGIN and self._scores_due(self.step):
            self.criterion.on_step_begin()
        if self.score_step(self.step):
            self.criterion.prepare_scores()  # this step reads the scores (prune, update or log)
        if self.schedule.is_pruning_step(self.step):
            self._prune(self.schedule.target(self.step))
            self.criterion.on_pruning_step()
        elif self.updater is not None and self.updater.is_update_step(self.step):
            self._apply_changes(self.updater.changes(self, self.step, in_place=True), self.updater.resets_grown_state)
            self.criterion.on_pruning_step()
        elif hook is ScoreHook.MODEL and self._requested(self.step):
            self._score_model()  # scores for logging only

    def on_before_optimizer_step(self) -> None:
        """After backward: gradient-based criteria score now (for the next step's use). With a fused step bound,
        the pruned weights also take their optimizer step and masks here, with the scores where the criterion
        gives a rule (one pass, :mod:`prunelab.training.fused_step`)."""
        due = self.criterion.score_hook is ScoreHook.BEFORE_OPTIMIZER_STEP and self._grad_scores_due()
        self._fused_now = self.fused_step is not None and self.fused_step.ready()
        rule = self.criterion.fused_rule() if due and self._fused_now else None
        if due and rule is None:
            self.criterion.on_before_optimizer_step()
        if self._fused_now:
            scores = [self.criterion.scores[n] for n in self.names] if rule is not None else None
            self._fused_now = self.fused_step.step([self.masks[n] for n in self.names], scores, rule)
            if not self._fused_now and rule is not None:  # it failed to compile, before writing anything
                self.criterion.on_before_optimizer_step()

    def on_after_optimizer_step(self) -> None:
        """After the optimizer step: re-apply the masks so pruned weights are exactly 0 again (a fused step has
        applied them already)."""
        if self.criterion.score_hook is ScoreHook.AFTER_OPTIMIZER_STEP and self._grad_scores_due():
            self.criterion.on_after_optimizer_step()
        if self._fused_now:
            self.fused_step.release()
            self._fused_now = False
        else:
            self.apply_masks()

    def on_train_end(self) -> None:
        self.apply_masks()

    # --- when scores are needed ---
    def _requested(self, step: int) -> bool:
        return any(step % every == 0 for every in self._score_every)

    def score_step(self, step: int) -> bool:
        """True where the scores are used or logged: pruning steps, mask updates and requested steps."""
        update = self.updater is not None and self.updater.is_update_step(step)
        return self._requested(step) or update or self.schedule.is_pruning_step(step)

    @property
    def last_mask_step(self) -> int:
        """The last step at which masks may change (the schedule's end, or the updater's last step)."""
        return max(self.schedule.end_step, self.updater.last_step if self.updater is not None else -1)

    def _scores_due(self, step: int) -> bool:
        return self.criterion.stateful or self.score_step(step)

    def _grad_scores_due(self) -> bool:
        if self.criterion.stateful:  # history: every step until the masks are final (or while logging)
            return self.step < self.last_mask_step or bool(self._score_every)
        return self.score_step(self.step + 1)

    # --- model-level scoring ---
    def _batches(self) -> list[Batch]:
        source = self.calibration
        if source is None:
            raise ConfigError("pruner.calibration", None,
                              f"calibration batches for criterion {self.criterion.name} (Pruner.bind(calibration=...))")
        batches = source(self.criterion.calibration) if callable(source) else source
        return list(batches)

    def _score_model(self) -> None:
        if self.model is None:
            raise ConfigError("pruner.model", None,
                              f"the model, for criterion {self.criterion.name}'s own passes (Pruner(model) or bind)")
        batches = self._batches()
        with sandboxed(self.model):
            self.criterion.score_model(self.model, batches)

    def _prune(self, target: float) -> None:
        """A pruning step: new masks at ``target`` (model-level criteria: in rounds, re-scoring each)."""
        initial = [w.detach().clone() for w in self._weights] if self.ablation.moves_masks else None
        if self.criterion.score_hook is not ScoreHook.MODEL:
            self.update_masks(target)
        else:
            rounds, before = self.criterion.rounds, self.target
            changed: dict[str, int] = {}
            for k in range(1, rounds + 1):
                self._score_model()
                t = target if k == rounds else 1 - (1 - before) * ((1 - target) / (1 - before)) ** (k / rounds)
                self.update_masks(t)
                changed = {n: changed.get(n, 0) + c for n, c in self.changed.items()}
            self.changed = changed
        self._ablate(initial)

    @torch.no_grad()
    def _ablate(self, initial: list[Tensor] | None) -> None:
        """The ablation's final masks (shuffle: the weights as they were before the step, ``initial``, under them)
        and its re-drawn kept weights (reinit, their optimizer state zeroed)."""
        new = self.ablation.masks(self.masks, self.pattern.tiling, self.step)
        if new is not None and initial is not None:  # one-shot: the step's flips stay those from the masks before
            changed = self.changed
            torch._foreach_copy_(self._weights, initial)
            self._apply_update(new)
            self.changed = changed
        redrawn = self.ablation.weights(self.criterion.modules, dict(zip(self.names, self._weights)), self.masks,
                                        self.step)
        if redrawn:
            reset_optimizer_state(self.optimizer, redrawn)
            self.apply_masks()

    # --- masks ---
    @torch.no_grad()
    def update_masks(self, target: float) -> None:
        """Recompute every mask from the current scores at ``target`` sparsity and apply them."""
        ranked = self.ablation.ranking(self.criterion.scores, self.masks)
        self._apply_update(self.pattern.masks(ranked, target, self.distribution))
        self.target = float(target)

    @torch.no_grad()
    def _apply_update(self, new: Mapping[str, Tensor]) -> None:
        """Take new masks (a pruning step): count the flips, apply."""
        flips = count_true([self.masks[n] ^ new[n] for n in self.names])
        for name in self.names:
            self.masks[name].copy_(new[name])
        self._took(dict(zip(self.names, flips)))

    @torch.no_grad()
    def _apply_changes(self, changes: Mapping[str, MaskChange], reset_grown: bool) -> None:
        """Take a mask updater's changes by position: the flipped mask entries set, the dropped weights zeroed and,
        with ``reset_grown``, the grown weights and their optimizer state. That is the masks applied, touching only
        the entries that change: between steps every other pruned weight is 0 already (the masks are applied after
        every optimizer step and at the start of training). A change the kernel that found it already wrote
        (``applied``) is only recorded."""
        grown: dict[Tensor, Tensor] = {}
        for name, w in zip(self.names, self._weights):
            change, flat = changes[name], self.masks[name].view(-1)
            if not change.applied:
                flat.index_fill_(0, change.off.to(flat.device), False).index_fill_(0, change.on.to(flat.device), True)
                fill_at_all([w], change.off)
                if reset_grown:  # a grown weight starts at 0, its optimizer state too
                    fill_at_all([w], change.on)
                    grown[w] = change.on
            self._kept_at[name] = (change.kept, flat._version)
        reset_optimizer_state(self.optimizer, grown)
        self._took({n: changes[n].off.numel() + changes[n].on.numel() for n in self.names},
                   [changes[n].kept.numel() for n in self.names], applied=True)

    def kept_positions(self, name: str) -> Tensor:
        """The flat positions of layer ``name``'s kept weights, ascending (int64, CPU): those the last update by
        position set, while the mask's version counter says nothing has written it since (a resume, a pruning
        step or any in-place torch write bumps it), else found anew."""
        mask = self.masks[name]
        kept = self._kept_at.get(name)
        if kept is not None and kept[1] == mask._version:
            return kept[0]
        return true_positions(mask).cpu()

    def _took(self, changed: dict[str, int], kept: list[int] | None = None, applied: bool = False) -> None:
        """After new masks: record the flips, refresh which layers have pruned weights, apply the masks. With
        ``applied`` the caller wrote every entry that changed: nothing more unless a layer turned dense or sparse."""
        self.changed = changed
        self.pruned_at_step = True
        if applied and kept is not None and self._active == [
                i for i, (k, w) in enumerate(zip(kept, self._weights)) if k < w.numel()]:
            return
        self._refresh_active(kept)
        self.apply_masks()

    def _refresh_active(self, kept: list[int] | None = None) -> None:
        kept = count_true(list(self.masks.values())) if kept is None else kept
        self._active = [i for i, (k, m) in enumerate(zip(kept, self.masks.values())) if k < m.numel()]
        self._active_w = [self._weights[i] for i in self._active]
        # uint8 views of the bool masks (no copy): float * uint8 takes torch's fast path, float * bool does not
        self._active_m = [self.masks[self.names[i]].view(torch.uint8) for i in self._active]

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Zero every pruned weight (in place; only layers with pruned weights are touched)."""
        if self._active:
            torch._foreach_mul_(self._active_w, self._active_m)

    # --- what the masks rank ---
    @torch.no_grad()
    def block_scores(self) -> dict[str, Tensor]:
        """The scores the masks rank, per pruned layer, after the pattern's reduction to blocks, in the block grid's
        shape (see :meth:`Pattern.block_scores`): exactly what the last (or next) mask update compares (with
        ``criterion.ablation=invert``, it ranks their negation)."""
        self.criterion.prepare_scores()
        return self.pattern.block_scores(self.criterion.scores)

    # --- reporting ---
    def layers(self) -> list[LayerInfo]:
        """Every candidate layer, pruned or skipped with the reason."""
        return list(self.table)

    @torch.no_grad()
    def sparsity(self) -> dict[str, Any]:
        """Actual sparsity counted from zeros in the weights (not from the target): per layer and overall."""
        nonzero = count_true(self._weights)
        zeros = [w.numel() - n for w, n in zip(self._weights, nonzero)]
        sizes = [w.numel() for w in self._weights]
        total, nz = sum(sizes), sum(zeros)
        return {
            "overall": nz / total,
            "zeros": int(nz),
            "total": int(total),
            "layers": {n: z / s for n, z, s in zip(self.names, zeros, sizes)},
        }

    def mask_sparsity(self) -> dict[str, float]:
        """Fraction of pruned entries per mask (what the masks remove; differs from the zeros in the weights when a
        kept weight is exactly 0, e.g. one just grown back)."""
        kept = count_true(list(self.masks.values()))
        return {n: 1.0 - k / m.numel() for (n, m), k in zip(self.masks.items(), kept)}

    def masked_fraction(self) -> float:
        """The fraction of the pruned layers' weights that the masks remove."""
        kept = sum(count_true(list(self.masks.values())))
        return 1.0 - kept / sum(m.numel() for m in self.masks.values())

    # --- checkpoints ---
    def state_dict(self) -> dict[str, Any]:
        """Masks, criterion and updater state, step and last target: enough to continue exactly. Written at the end
        of a step that precedes an update of an updater that grows by gradient (RigL), also the pruned layers'
        gradients, which that update ranks (``grads``)."""
        state = {
            "step": self.step,
            "target": self.target,
            "masks": {n: m.clone() for n, m in self.masks.items()},
            "criterion": self.criterion.state_dict(),
            "criterion_type": self.criterion.name,
        }
        if self.updater is not None:
            state["updater"] = self.updater.state_dict()
            if self.updater.grows_by_gradient and self.updater.is_update_step(self.step + 1):
                state["grads"] = {n: w.grad.detach().clone() for n, w in zip(self.names, self._weights)
                                  if w.grad is not None}
        return state

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
        if self.updater is not None:
            self.updater.load_state_dict(state.get("updater", {}))
        for n, g in state.get("grads", {}).items():  # the gradient the next step's update ranks (RigL)
            w = self._weights[self.names.index(n)]
            w.grad = g.to(device=w.device, dtype=w.dtype)
        self.step = int(state["step"])
        self.target = float(state.get("target", 0.0))
        self._refresh_active()
        self.apply_masks()

    def layer_targets(self, target: float | None = None) -> dict[str, float] | None:
        """The sparsity every pruned layer is given at ``target`` (default: the schedule's final target), as the
        distribution splits it before any score exists (within the per-op bounds); None for a split the scores
        decide (``global``)."""
        target = self.schedule.target_sparsity if target is None else float(target)
        shapes = [tuple(w.shape) for w in self._weights]
        sizes = [self.pattern.num_blocks(s) for s in shapes]
        bounds = [self.pattern.block_bounds(b) for b in sizes]
        counts = self.distribution.layer_targets(sizes, shapes, target, self.pattern, bounds)
        if counts is None:
            return None
        return {n: self.pattern.block_sparsity(min(max(k, lo), hi), b)
                for n, k, b, (lo, hi) in zip(self.names, counts, sizes, bounds)}

    def describe(self) -> str:
        """A table of every candidate layer: shape, parameters, its target sparsity at the final target (where the
        distribution fixes it before any score; ``global`` where one ranking decides), pruned or skipped (why)."""
        targets = self.layer_targets()
        rows = [f"{'layer':<28} {'type':<8} {'shape':<20} {'params':>9} {'target':>7}  status"]
        for li in self.table:
            status = "pruned" if li.pruned else f"skipped: {li.reason}"
            tgt = "-" if not li.pruned else self.distribution.name if targets is None else f"{targets[li.name]:.4f}"
            rows.append(f"{li.name:<28} {li.op_type:<8} {str(list(li.shape)):<20} {li.numel:>9} {tgt:>7}  {status}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        pruned = [li.name for li in self.table if li.pruned]
        skipped = [f"{li.name} ({li.reason})" for li in self.table if not li.pruned]
        return (
            f"Pruner(criterion={self.criterion.name}, {self.pattern!r}, distribution={self.distribution.name}, "
            f"{self.schedule!r},\n  pruned={pruned},\n  skipped={skipped})"
        )


def default_distribution(criterion: str | Mapping[str, Any] | PruningCriterion | Any) -> str | None:
    """The distribution a criterion declares for when none is named (its class's ``default_distribution``)."""
    if isinstance(criterion, PruningCriterion):
        return type(criterion).default_distribution
    name = config_to_dict(criterion).get("criterion_type")
    return CRITERIA.get(str(name)).default_distribution if name is not None else None


@contextlib.contextmanager
def sandboxed(model: nn.Module) -> Iterator[None]:
    """Run a criterion's own passes without side effects on training: the model's buffers (BatchNorm running
    statistics), its parameters' ``.grad``, its train/eval mode and the global RNG states are restored after."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    grads = [(p, p.grad) for p in model.parameters()]  # stashed: passes accumulate into fresh .grad tensors
    for p in model.parameters():
        p.grad = None
    modes = [(m, m.training) for m in model.modules()]
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
            for p, g in grads:
                p.grad = g
            for m, mode in modes:
                m.training = mode
