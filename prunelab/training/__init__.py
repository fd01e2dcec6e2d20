"""Training: the generic loop (:mod:`.trainer`), its callbacks (pruning, tracking, checkpointing), checkpoints,
learning-rate schedules, calibration batches and data-parallel helpers."""
from .callbacks import Callback, CheckpointCallback, PruningCallback, TrackingCallback
from .trainer import Interrupted, Loop, NonFiniteLoss, Trainer, TrainerConfig, resolve_device

__all__ = [
    "Callback", "CheckpointCallback", "Interrupted", "Loop", "NonFiniteLoss", "PruningCallback", "TrackingCallback",
    "Trainer", "TrainerConfig", "resolve_device",
]
