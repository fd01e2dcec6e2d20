"""prunelab: compare neural-network pruning criteria.

The core (usable without Hydra or W&B): :mod:`prunelab.criteria` (what a weight is worth), :mod:`prunelab.sparsity`
(patterns, exact-count selection, distributions over layers), :mod:`prunelab.schedule` (when, to which target),
:mod:`prunelab.regrowth` (mask updaters that grow) and :class:`prunelab.pruner.Pruner`, which joins them behind five
training hooks. :func:`prunelab.saved.load_pruned` loads a finished run's pruned model back from its directory.

Names are imported on first use (``prunelab.Pruner`` imports the pruner and torch then), so the command line
answers a mistyped option without loading torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
#: public name -> the module that defines it
_EXPORTS = {
    **dict.fromkeys(["CRITERIA", "GradientCriterion", "MagnitudeCriterion", "PruningCriterion", "RandomCriterion",
                     "ScoreHook", "SnipCriterion", "SnipMomentumCriterion", "get_criterion", "register_criterion"],
                    ".criteria"),
    "ConfigError": ".errors", "select_layers": ".layers", "Pruner": ".pruner", "MaskUpdater": ".regrowth",
    "Schedule": ".schedule", **dict.fromkeys(["DISTRIBUTIONS", "Distribution", "Pattern"], ".sparsity"),
    **dict.fromkeys(["PrunedRun", "load_pruned"], ".saved"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'prunelab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
