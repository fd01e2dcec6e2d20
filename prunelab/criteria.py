"""Pruning criteria: how important each weight is.

The API follows Intel Neural Compressor 2.x (``neural_compressor.pruner.criteria``): ``register_criterion(name)``,
``get_criterion(config, modules)`` and a ``PruningCriterion(modules, config)`` base with ``scores`` and the hooks
``on_step_begin``, ``on_before_optimizer_step`` and ``on_after_optimizer_step``. ``scores`` maps every layer name
to a float32 tensor of its weight's shape; a higher score means more important (kept).

All score work runs under ``torch.no_grad()`` in place into preallocated tensors, batched over layers with
``torch._foreach_*``, on the weights' device. Criteria know nothing of masks, schedules or logging.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .errors import ConfigError
from .registry import Registry

CRITERIA: Registry[type["PruningCriterion"]] = Registry("criterion.criterion_type")


def register_criterion(name: str) -> Callable[[type["PruningCriterion"]], type["PruningCriterion"]]:
    """Class decorator: register a criterion under ``name`` (registering a name twice is an error)."""

    def deco(cls: type[PruningCriterion]) -> type[PruningCriterion]:
        CRITERIA.register(name)(cls)
        cls.name = name
        return cls

    return deco


def config_to_dict(config: Any) -> dict[str, Any]:
    """Read a config given as a dict, an OmegaConf config, a dataclass or None into a plain dict."""
    if config is None:
        return {}
    if isinstance(config, str):
        return {"criterion_type": config}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(config, DictConfig):
            return dict(OmegaConf.to_container(config, resolve=True))  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"config must be a dict, an OmegaConf config or a dataclass, not {type(config).__name__}")


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
    #: True when scores come from gradients: such a criterion needs training steps before it can prune.
    needs_gradients: bool = False
    #: True when scores carry history across steps, so they must be updated at every step and checkpointed.
    stateful: bool = False
    #: The hook that computes the scores (the pruner calls only that one when scores are due).
    score_hook: str = "on_step_begin"

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        self.config = config_to_dict(config)
        self.modules = dict(modules)
        self.names: list[str] = list(self.modules)
        self._weights: list[Tensor] = [_weight_of(n, m) for n, m in self.modules.items()]
        self.scores: dict[str, Tensor] = {
            n: torch.zeros(w.shape, dtype=torch.float32, device=w.device) for n, w in zip(self.names, self._weights)
        }
        self._score_list: list[Tensor] = [self.scores[n] for n in self.names]

    # --- hooks (the reference's names) ---
    def on_step_begin(self) -> None:
        """Compute scores at the beginning of a step (before forward)."""

    def on_before_optimizer_step(self) -> None:
        """Compute scores after backward, before the optimizer step (gradients are available)."""

    def on_after_optimizer_step(self) -> None:
        """Compute scores after the optimizer step."""

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
        """Scores that cannot be recomputed from the weights alone (gradient-based ones) are state."""
        if self.score_hook == "on_step_begin" and not self.stateful:
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


@register_criterion("magnitude")
class MagnitudeCriterion(PruningCriterion):
    """Magnitude: ``score = |W|``, computed in ``on_step_begin`` (Han et al. 2015, "Learning both Weights and
    Connections for Efficient Neural Networks")."""

    @torch.no_grad()
    def on_step_begin(self) -> None:
        torch._foreach_copy_(self._score_list, self._weights)
        torch._foreach_abs_(self._score_list)


@register_criterion("gradient")
class GradientCriterion(PruningCriterion):
    """Gradient: ``score = |dL/dW|``, computed in ``on_before_optimizer_step``.

    Gradients are not masked, so a pruned weight with a large gradient can be kept again (at value 0) when the
    masks are recomputed, as in the reference. Layers without a gradient (step 0) keep their last scores.
    """

    needs_gradients = True
    score_hook = "on_before_optimizer_step"

    @torch.no_grad()
    def on_before_optimizer_step(self) -> None:
        s, _, g = self._grads()
        if s:
            torch._foreach_copy_(s, g)
            torch._foreach_abs_(s)


@register_criterion("snip")
class SnipCriterion(PruningCriterion):
    """SNIP connection sensitivity: ``score = |W * dL/dW|``, computed in ``on_before_optimizer_step``.

    Lee, Ajanthan & Torr 2019, "SNIP: Single-shot Network Pruning based on Connection Sensitivity"
    (https://arxiv.org/abs/1810.02340). A pruned weight (W = 0) scores 0, so it stays pruned.
    """

    needs_gradients = True
    score_hook = "on_before_optimizer_step"

    @torch.no_grad()
    def on_before_optimizer_step(self) -> None:
        s, w, g = self._grads()
        if s:
            torch._foreach_copy_(s, w)
            torch._foreach_mul_(s, g)
            torch._foreach_abs_(s)


@register_criterion("snip_momentum")
class SnipMomentumCriterion(PruningCriterion):
    """SNIP with momentum: ``S <- alpha * S + beta * |W * dL/dW|``, S starting at 0, every step.

    Intel Neural Compressor's snip_momentum (the criterion of its "Prune Once for All"-style recipes). Its code
    computes ``alpha * S + beta * |W * grad|`` with ``alpha = 0.9`` (the history) and ``beta = 1.0`` (the new
    term); its README states the two weights the other way round. We follow the code.
    """

    needs_gradients = True
    stateful = True
    score_hook = "on_before_optimizer_step"

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        super().__init__(modules, config)
        self.alpha = float(self.config.get("alpha", 0.9))
        self.beta = float(self.config.get("beta", 1.0))
        for key, val in (("alpha", self.alpha), ("beta", self.beta)):
            if not val >= 0.0:
                raise ConfigError(f"criterion.{key}", val, "a number >= 0")

    @torch.no_grad()
    def on_before_optimizer_step(self) -> None:
        s, w, g = self._grads()
        if not s:
            return
        # S <- alpha * S + beta * |W * g| in three passes: the new term in a transient tensor, the history added
        # into it, and the scores' storage swapped to it (the persistent state stays one float per weight)
        fresh = torch._foreach_mul(w, g)
        torch._foreach_abs_(fresh)
        if fresh[0].dtype != torch.float32:
            fresh = [f.float() for f in fresh]
        if self.beta != 1.0:
            torch._foreach_mul_(fresh, self.beta)
        torch._foreach_add_(fresh, s, alpha=self.alpha)
        for score, new in zip(s, fresh):
            score.set_(new)


@register_criterion("random")
class RandomCriterion(PruningCriterion):
    """Random: a seeded uniform score in [0, 1), drawn once — the baseline every pruning paper compares
    against (e.g. Blalock et al. 2020, "What is the State of Neural Network Pruning?").

    Scores are drawn on the CPU from ``config['seed']`` (default 0) in layer order, so they are the same on
    every device and every data-parallel rank; gradual pruning then removes a growing, nested random set.
    """

    def __init__(self, modules: Mapping[str, nn.Module | Tensor], config: Any = None) -> None:
        super().__init__(modules, config)
        self.seed = int(self.config.get("seed", 0))
        gen = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for score in self._score_list:
                score.copy_(torch.rand(score.shape, generator=gen))
