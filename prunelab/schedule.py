"""When to prune, and to which target sparsity.

Pruning happens at the steps ``start_step + k * pruning_frequency <= end_step`` (``start_step == end_step`` is
one-shot). With n = (number of pruning steps - 1), the i-th of them targets f(i / n), from the initial sparsity
s0 to the target s (a lone pruning step reaches s):

* ``exp``    ``1 - (1 - s0) * ((1 - s) / (1 - s0)) ** (i / n)`` (the reference's default)
* ``cos``    ``s0 + (s - s0) * (1 - cos(i / n * pi / 2))``
* ``linear`` ``s0 + (s - s0) * i / n``
* ``cube``   ``s0 + (s - s0) * (i / n) ** 3`` (the reference's: prunes slowly first)
* ``agp``    ``s + (s0 - s) * (1 - i / n) ** 3`` (Zhu & Gupta 2017, "To prune, or not to prune": fast first)

As in Intel Neural Compressor, the first of several pruning steps targets s0 (nothing new is pruned when
s0 = 0) and the last reaches s.

In a config, start and end are steps (``start_step``, ``end_step``) or fractions of the training length
(``start``, ``end``: ``floor(fraction * total_steps)``, the product rounded to 1e-6 first), so a schedule given in
fractions stays valid whatever the training length; a step, when set, wins over its fraction
(:meth:`Schedule.from_config`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError
from .options import config_to_dict
from .registry import Registry

Decay = Callable[[float, float, float], float]
#: ``sparsity_decay_type`` -> f(s0, s, x): the target at the fraction x in [0, 1] of the pruning steps.
DECAYS: Registry[Decay] = Registry("schedule.sparsity_decay_type")


@DECAYS.register("exp", paper="Intel Neural Compressor 2.x (its default)")
def exp_decay(s0: float, s: float, x: float) -> float:
    """Exponential: the kept fraction shrinks by the same factor at every pruning step."""
    return 1 - (1 - s0) * ((1 - s) / (1 - s0)) ** x


@DECAYS.register("cos", paper="Intel Neural Compressor 2.x")
def cos_decay(s0: float, s: float, x: float) -> float:
    """Cosine: s0 + (s - s0) * (1 - cos(x * pi / 2)), slow first."""
    return s0 + (s - s0) * (1 - math.cos(x * math.pi / 2))


@DECAYS.register("linear", paper="Intel Neural Compressor 2.x")
def linear_decay(s0: float, s: float, x: float) -> float:
    """Linear: the same number of weights pruned at every pruning step."""
    return s0 + (s - s0) * x


@DECAYS.register("cube", paper="Intel Neural Compressor 2.x")
def cube_decay(s0: float, s: float, x: float) -> float:
    """Cube: s0 + (s - s0) * x ** 3, slow first (the reference's)."""
    return s0 + (s - s0) * x**3


@DECAYS.register("agp", paper="Zhu & Gupta 2017, To prune, or not to prune")
def agp_decay(s0: float, s: float, x: float) -> float:
    """Automated gradual pruning: s + (s0 - s) * (1 - x) ** 3, fast first."""
    return s + (s0 - s) * (1 - x) ** 3


def step_of(d: dict[str, Any], key: str, total_steps: int | None) -> int | None:
    """``<key>_step`` if set, else the fraction ``<key>`` of ``total_steps`` (None when neither is set)."""
    step, frac = d.get(f"{key}_step"), d.get(key)
    if step is not None or frac is None:
        return step
    if isinstance(frac, bool) or not isinstance(frac, (int, float)) or not 0.0 <= frac < 1.0:
        raise ConfigError(f"schedule.{key}", frac, "a fraction of training in [0, 1)")
    if total_steps is None and frac != 0:  # 0 is step 0 of any length (schedule=at_init)
        raise ConfigError(f"schedule.{key}", frac, f"a step (schedule.{key}_step=N) where the training length is "
                          "not known in advance (with trainer.finetune_steps it follows from the schedule's end)")
    return int(math.floor(round(frac * (total_steps or 0), 6)))


@dataclass(frozen=True)
class Schedule:
    """A pruning schedule over global training steps (0-based)."""

    target_sparsity: float = 0.9
    start_step: int = 0
    end_step: int = 0
    pruning_frequency: int = 1
    sparsity_decay_type: str = "exp"
    initial_sparsity: float = 0.0

    def __post_init__(self) -> None:
        s, s0 = self.target_sparsity, self.initial_sparsity
        if not isinstance(s, (int, float)) or not 0.0 <= s < 1.0:
            raise ConfigError("schedule.target_sparsity", s, "a number in [0, 1)")
        if not isinstance(s0, (int, float)) or not 0.0 <= s0 <= s:
            raise ConfigError("schedule.initial_sparsity", s0, f"a number in [0, schedule.target_sparsity={s}]")
        for key in ("start_step", "end_step"):
            val = getattr(self, key)
            if not isinstance(val, int) or isinstance(val, bool) or val < 0:
                raise ConfigError(f"schedule.{key}", val, "an integer >= 0")
        if self.start_step > self.end_step:
            raise ConfigError("schedule.start_step", self.start_step, f"<= schedule.end_step ({self.end_step})")
        f = self.pruning_frequency
        if not isinstance(f, int) or isinstance(f, bool) or f < 1:
            raise ConfigError("schedule.pruning_frequency", f, "an integer >= 1")
        if self.sparsity_decay_type not in DECAYS:
            raise ConfigError("schedule.sparsity_decay_type", self.sparsity_decay_type, f"one of {', '.join(DECAYS)}")

    @classmethod
    def from_config(cls, cfg: Any, total_steps: int | None = None) -> "Schedule":
        """Build from a dict / OmegaConf config holding (some of) the field names; other keys are ignored.
        ``start`` / ``end`` (fractions of training) become steps of ``total_steps`` where ``start_step`` /
        ``end_step`` are not set."""
        d = config_to_dict(cfg)
        for key in ("start", "end"):
            d[f"{key}_step"] = step_of(d, key, total_steps)
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d and d[k] is not None}
        return cls(**fields)

    @property
    def one_shot(self) -> bool:
        return self.start_step == self.end_step

    @property
    def steps(self) -> list[int]:
        """Every pruning step, in order."""
        return list(range(self.start_step, self.end_step + 1, self.pruning_frequency))

    def is_pruning_step(self, step: int) -> bool:
        return self.start_step <= step <= self.end_step and (step - self.start_step) % self.pruning_frequency == 0

    def target(self, step: int) -> float:
        """The target sparsity of a pruning step (ValueError for a step that does not prune)."""
        if not self.is_pruning_step(step):
            raise ValueError(f"step {step} is not a pruning step of {self}")
        n = (self.end_step - self.start_step) // self.pruning_frequency
        if n == 0:
            return float(self.target_sparsity)
        i = (step - self.start_step) // self.pruning_frequency
        return float(DECAYS.get(self.sparsity_decay_type)(self.initial_sparsity, self.target_sparsity, i / n))

    def sparsity_at(self, step: int) -> float:
        """The target in force at any step: that of the last pruning step at or before it (0 before any)."""
        if step < self.start_step:
            return 0.0
        last = min(step, self.end_step)
        last -= (last - self.start_step) % self.pruning_frequency
        return self.target(last)

    def plan(self) -> list[tuple[int, float]]:
        """Every pruning step with its target sparsity, to see the plan before training."""
        return [(t, self.target(t)) for t in self.steps]
