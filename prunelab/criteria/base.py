"""The criterion contract: ``PruningCriterion``, its registry, and when a criterion computes its scores.

The API follows Intel Neural Compressor 2.x (``neural_compressor.pruner.criteria``): ``register_criterion(name)``,
``get_criterion(config, modules)`` and a ``PruningCriterion(modules, config)`` base with ``scores`` and the hooks
``on_step_begin``, ``on_before_optimizer_step`` and ``on_after_optimizer_step``. ``scores`` maps every layer name
to a float32 tensor of its weight's shape; a higher score means more important (kept).

What wave 2 adds is declared on the class and checked when it is registered:

* ``score_hook`` (a :class:`ScoreHook`): the one per-step hook that computes the scores, ``model`` for criteria
  that run passes of their own (:meth:`PruningCriterion.score_model`), or ``fixed`` for scores set once at
  construction. A misspelled hook, or a declared hook the class does not implement, fails at registration
  (never a criterion whose scores silently stay 0).
* ``needs_gradients``, ``stateful``, ``distributions`` (the distributions the criterion is meaningful with),
  ``default_distribution`` (the one it is used with when none is named), ``rounds`` (iterative model-level
  scoring), ``calibration`` (the batches ``score_model`` wants) and ``paper``.

Three calls from the pruner let a criterion follow what the masks do, without knowing the pruner:
:meth:`PruningCriterion.use_pattern` (before the first step: the :class:`~prunelab.sparsity.patterns.Pattern` the
masks are cut with, for criteria whose score depends on which weights are removed together, e.g. taylor's
unit-level score), :meth:`PruningCriterion.prepare_scores` (at a step whose scores are read, before they are: a
criterion may keep a cheaper form in between) and :meth:`PruningCriterion.on_pruning_step` (right after a pruning
step or a mask update used the scores, for criteria that average over the steps between pruning steps).

All score work runs under ``torch.no_grad()`` in place into preallocated tensors, batched over layers with
``torch._foreach_*``, on the weights' device. Criteria know nothing of masks, schedules or logging.
"""
from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Callable, Hashable, Optional

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..options import config_to_dict
from ..options import parse_options as check_options
from ..registry import Registry

if TYPE_CHECKING:
    from ..sparsity.patterns import Pattern

CRITERIA: Registry[type["PruningCriterion"]] = Registry("criterion.criterion_type")


class ScoreHook(str, enum.Enum):
    """When a criterion computes its scores."""

    STEP_BEGIN = "on_step_begin"                        #: before forward (weights as they stand)
    BEFORE_OPTIMIZER_STEP = "on_before_optimizer_step"  #: after backward (gradients are here)
    AFTER_OPTIMIZER_STEP = "on_after_optimizer_step"    #: after the optimizer step
    MODEL = "model"                                     #: ``score_model(model, batches)`` at pruning steps
    FIXED = "fixed"                                     #: once, at construction (e.g. random)

    @property
    def per_step(self) -> bool:
        return self in (ScoreHook.STEP_BEGIN, ScoreHook.BEFORE_OPTIMIZER_STEP, ScoreHook.AFTER_OPTIMIZER_STEP)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The batches a model-level criterion asks for: ``batches`` mini-batches of ``batch_size`` training samples
    (None: the trainer's batch size), or, with ``per_class``, that many samples of every class in one batch."""

    batches: int = 1
    batch_size: int | None = None
    per_class: int | None = None


def register_criterion(name: str) -> Callable[[type["PruningCriterion"]], type["PruningCriterion"]]:
    """Class decorator: register a criterion under ``name``.

    Registering a name twice, a ``score_hook`` that is not a :class:`ScoreHook` value, or a declared hook the class
    does not implement is an error here, at import time.
    """

    def deco(cls: type[PruningCriterion]) -> type[PruningCriterion]:
        CRITERIA.ensure_free(name)
        check_declaration(name, cls)
        CRITERIA.register(name)(cls)
        cls.name = name
        return cls

    return deco


def check_declaration(name: str, cls: type) -> None:
    """Raise TypeError unless ``cls`` is a criterion whose declared ``score_hook`` it implements."""
    if not (isinstance(cls, type) and issubclass(cls, PruningCriterion)):
        raise TypeError(f"criterion {name!r}: {cls!r} is not a PruningCriterion subclass")
    try:
        hook = ScoreHook(cls.score_hook)
    except ValueError:
        allowed = ", ".join(h.value for h in ScoreHook)
        raise TypeError(f"criterion {name!r}: score_hook={cls.score_hook!r} is not one of {allowed}") from None
    cls.score_hook = hook
    method = "score_model" if hook is ScoreHook.MODEL else hook.value if hook.per_step else None
    if method is not None and getattr(cls, method) is getattr(PruningCriterion, method):
        raise TypeError(f"criterion {name!r} declares score_hook={hook.value!r} but does not implement {method}(): "
                        "its scores would stay 0")
    if not isinstance(cls.rounds, int) or cls.rounds < 1:
        raise TypeError(f"criterion {name!r}: rounds={cls.rounds!r} is not an integer >= 1")


#: config keys every criterion takes besides its own ``Options`` (handled by the pruner, not the criterion):
#: ``ablation`` is one of :data:`prunelab.criteria.ablations.ABLATIONS` (none, shuffle, invert, reinit); ``label``
#: names the method in run names and reports where a preset is more than its criterion (``static_erk``, ``gmp``)
COMMON_KEYS = ("criterion_type", "ablation", "label")


def parse_options(cls: type["PruningCriterion"], config: Mapping[str, Any]) -> Any:
    """``config`` (without :data:`COMMON_KEYS`) checked against ``cls.Options``: an instance of it, or a one-line
    :class:`ConfigError` for an unknown key or a value of the wrong type."""
    return check_options("criterion", cls.Options, config, f"criterion {cls.name}", ignore=COMMON_KEYS)


def get_criterion(config: Any, modules: Mapping[str, nn.Module | Tensor]) -> "PruningCriterion":
    """Build the criterion named by ``config['criterion_type']`` over ``modules``."""
    cfg = config_to_dict(config)
    name = cfg.get("criterion_type")
    if name is None:
        raise ConfigError("criterion.criterion_type", None, f"registered: {', '.join(CRITERIA.names())}")
    return CRITERIA.get(str(name))(modules, cfg)


def _weight_of(name: str, obj: nn.Module | Tensor) -> Tensor:
    if isinstance(obj, Tensor):
        return obj
    weight = getattr(obj, "weight", None)
    if not isinstance(weight, Tensor):
        raise ConfigError(f"modules[{name!r}]", type(obj).__name__, "a tensor or a layer with a .weight tensor")
    return weight


class PruningCriterion:
    """Base criterion: holds the layers' weights and one float32 score tensor per layer.

    Args:
        modules: layer name -> layer with ``.weight`` (as the reference's code passes) or the weight tensor
            itself (as the reference's docs say); both work.
        config: dict / OmegaConf / dataclass with ``criterion_type`` and the criterion's parameters.
    """

    name: str = "base"
    #: The paper the criterion comes from (for ``prunelab list criteria``).
    paper: str = ""
    #: When the scores are computed (checked at registration; see :class:`ScoreHook`).
    score_hook: ScoreHook | str = ScoreHook.STEP_BEGIN
    #: True when scores come from gradients: such a criterion needs training steps before it can prune.
    needs_gradients: bool = False
    #: True when scores carry history across steps, so they must be updated at every step and checkpointed.
    stateful: bool = False
    #: The distributions (``distribution.name``) this criterion is meaningful with; None: any.
    distributions: tuple[str, ...] | None = None
    #: Why ``distributions`` is restricted (the error message's reason).
    distributions_reason: str = ""
    #: The distribution this criterion is used with when none is named (``Pruner(distribution=None)``; its YAML
    #: in ``conf/criterion/`` selects the same one); None: ``global``.
    default_distribution: str | None = None
    #: Made to score once, at initialization (SNIP, GraSP, SynFlow as published): a run that prunes with it more
    #: than once (a gradual schedule: re-scored at every pruning step) says so at its start.
    at_init: bool = False
    #: Model-level criteria: a pruning step reaches its target in this many rounds, re-scoring each time.
    rounds: int = 1
    #: Model-level criteria: the calibration batches :meth:`score_model` is given.
    calibration: Calibration = Calibration()

    @dataclasses.dataclass
    class Options:
        """The criterion's own config keys (typed, with defaults). A subclass with parameters defines its own
        ``Options`` dataclass; any other key is an error (one line naming it)."""

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        self.config = config_to_dict(config)
        self.options = parse_options(type(self), self.config)
        self.modules = dict(modules)
        self.names: list[str] = list(self.modules)
        self._weights: list[Tensor] = [_weight_of(n, m) for n, m in self.modules.items()]
        self.scores: dict[str, Tensor] = {
            n: torch.zeros(w.shape, dtype=torch.float32, device=w.device) for n, w in zip(self.names, self._weights)
        }
        self._score_list: list[Tensor] = [self.scores[n] for n in self.names]
        #: the pattern the masks are cut with (:meth:`use_pattern`); None until the pruner says
        self.pattern: Pattern | None = None

    # --- what the pruner tells the criterion ---
    def use_pattern(self, pattern: "Pattern") -> None:
        """The pruner names the pattern its masks are cut with, before the first step. Criteria whose score depends
        on which weights are removed together (taylor: one score per unit) read it; the others ignore it."""
        self.pattern = pattern

    def prepare_scores(self) -> None:
        """Called by the pruner at a step whose scores are read (a pruning step, a mask update, a score-logging
        step), before they are read. A criterion that keeps a cheaper form between such steps (taylor: a running
        sum rather than the mean) finishes its scores here; the default does nothing. Idempotent."""

    def on_pruning_step(self) -> None:
        """Called by the pruner right after a pruning step (or a mask update) has used the scores. A criterion that
        averages over the steps since the last pruning step starts a new average here; the default does nothing."""

    # --- hooks (the reference's names) ---
    def on_step_begin(self) -> None:
        """Compute scores at the beginning of a step (before forward)."""

    def on_before_optimizer_step(self) -> None:
        """Compute scores after backward, before the optimizer step (gradients are available)."""

    def on_after_optimizer_step(self) -> None:
        """Compute scores after the optimizer step."""

    def fused_rule(self) -> Optional[tuple[Hashable, Callable[[Tensor, Tensor, Tensor], Tensor]]]:
        """This criterion's ``on_before_optimizer_step`` as an elementwise expression ``(S, W, g) -> new S`` with a
        key naming its constants, for the pruner's fused step (``trainer.fused_step``), which then computes it in
        the same pass as the optimizer's step, rounded as the hook rounds it; None (the default): the hook runs."""
        return None

    def score_model(self, model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> None:
        """Model-level criteria: fill ``scores`` from passes of their own over ``model`` (masks applied) and
        ``batches`` (the calibration batches :attr:`calibration` asks for)."""

    # --- helpers ---
    @property
    def weights(self) -> list[Tensor]:
        return self._weights

    def _grads(self) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Scores, weights and gradients of the layers that have a gradient now (step 0 has none)."""
        s, w, g = [], [], []
        for score, weight in zip(self._score_list, self._weights):
            if weight.grad is not None:
                s.append(score)
                w.append(weight)
                g.append(weight.grad)
        return s, w, g

    def state_dict(self) -> dict[str, Any]:
        """Scores that cannot be recomputed from the weights alone (gradient-based ones, history) are state."""
        if self.score_hook in (ScoreHook.STEP_BEGIN, ScoreHook.FIXED) and not self.stateful:
            return {}
        return {"scores": {n: s.detach().clone() for n, s in self.scores.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state.get("scores")
        if not saved:
            return
        missing = set(self.names) - set(saved)
        if missing:
            raise ConfigError("checkpoint.criterion.scores", sorted(missing), "scores for every pruned layer")
        with torch.no_grad():
            for n in self.names:
                self.scores[n].copy_(saved[n])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(layers={len(self.names)}, config={self.config})"
