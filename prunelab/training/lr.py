"""Learning-rate schedules: linear warmup, then constant, step decay or cosine (as factors of ``optimizer.lr``)."""
from __future__ import annotations

import math
from typing import Callable

from ..errors import ConfigError

LR_SCHEDULES = ("none", "step", "cosine")


def lr_lambda(kind: str, total: int, warmup: int = 0, step_size: int = 1, gamma: float = 0.1,
              min_factor: float = 0.0) -> Callable[[int], float]:
    """The learning-rate factor at a step: linear warmup, then none / step decay / cosine to ``min_factor``."""
    if kind not in LR_SCHEDULES:
        raise ConfigError("trainer.lr_schedule", kind, f"one of {', '.join(LR_SCHEDULES)}")

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        t = step - warmup
        if kind == "step":
            return gamma ** (t // max(1, step_size))
        if kind == "cosine":
            span = max(1, total - warmup)
            return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * min(t, span) / span))
        return 1.0

    return factor
