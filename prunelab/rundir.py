"""The run-directory contract: the names of a run's files, atomic writes, and the config fingerprint.

A run directory holds ``config.yaml`` (resolved), ``summary.json`` (with ``status``), ``metrics.jsonl``,
``scores.jsonl``, ``masks.pt``, ``checkpoint.pt`` and ``wandb/``. Every file a run writes whole goes through
:func:`write_json_atomic` (or the checkpoint's own atomic write): a crash never leaves half a file.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

CONFIG = "config.yaml"
SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
SCORES = "scores.jsonl"
MASKS = "masks.pt"
CHECKPOINT = "checkpoint.pt"

#: trainer keys that change how a run executes or is watched, not its results (left out of the fingerprint)
EXECUTION_KEYS = ("resume", "checkpoint_every", "log_every", "progress", "num_threads", "check_masks")


def sparsity_text(target: float) -> str:
    """A sparsity as run names and reports print it: two decimals where they are exact (``0.90``), else every
    digit it has (``0.9375``, ``0.96875``), so two targets never print alike."""
    t = float(target)
    return f"{t:.2f}" if float(f"{t:.2f}") == t else repr(t)


def jsonable(v: Any) -> Any:
    """A value JSON can hold: tensors as numbers or lists, NaN as null, infinities as +-1e308."""
    if isinstance(v, Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    return v


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON via a temporary file, fsync and rename: a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        json.dump(obj, f, indent=2, default=jsonable)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def config_fingerprint(cfg: Mapping[str, Any]) -> str:
    """A hash of what determines a run's results (the trainer's execution knobs and logging left out), so a
    checkpoint is never resumed, nor a result reused, under another configuration."""
    d = json.loads(json.dumps(cfg, default=str))
    d.pop("logger", None)
    d.pop("tracking", None)
    for key in EXECUTION_KEYS:
        d.get("trainer", {}).pop(key, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
