"""Tracking: where a run's metrics, score distributions, masks and summary go. The tracker knows nothing of
training. :mod:`.base` (the interface), :mod:`.histograms`, :mod:`.local`, :mod:`.console`, :mod:`.wandb`,
:mod:`.build` (from the app's config)."""
from .base import Tracker, Trackers
from .build import build_tracker, check_logger_config, run_tags
from .console import ConsoleTracker
from .histograms import histograms, score_histogram
from .local import LocalTracker
from .wandb import WandbTracker, mask_image, resolve_wandb_mode, sparsity_rows

__all__ = [
    "ConsoleTracker", "LocalTracker", "Tracker", "Trackers", "WandbTracker", "build_tracker", "check_logger_config",
    "histograms", "mask_image", "resolve_wandb_mode", "run_tags", "score_histogram", "sparsity_rows",
]
