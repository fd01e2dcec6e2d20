"""Training: the generic loop (:mod:`.trainer`), its callbacks (pruning, tracking, checkpointing), checkpoints,
learning-rate schedules, calibration batches and data-parallel helpers. Names are imported on first use
(:mod:`.config` and :mod:`.lr` import no torch)."""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    **dict.fromkeys(["Callback", "CheckpointCallback", "PruningCallback", "TrackingCallback"], ".callbacks"),
    **dict.fromkeys(["Interrupted", "Loop", "NonFiniteLoss", "Trainer", "resolve_device"], ".trainer"),
    "TrainerConfig": ".config",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'prunelab.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
