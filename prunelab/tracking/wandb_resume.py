"""Exact W&B resume: which steps W&B really holds, and the rows to send again from the local record.

W&B keeps what it is given in a separate service process that writes the run's transaction log (offline) or
uploads it (online) in batches. A run killed with SIGKILL never flushes: its offline log can hold nothing of
the attempt, although every row was handed over. So "sent" is not "kept", and a resumed run that skipped the
rows it once sent would leave a hole between the last row W&B kept and the checkpoint. Instead:

* :func:`kept_through` asks W&B what it holds: online, the server's step of the resumed run; offline, the
  highest ``_step`` in the run's earlier transaction logs, read with W&B's own reader (``wandb leet inspect``);
* :func:`local_rows` rebuilds the rows after that, up to the checkpoint, from ``metrics.jsonl`` and
  ``scores.jsonl`` (the same values and histograms, so the history equals an uninterrupted run's).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..rundir import METRICS, SCORES, WANDB


def wandb_cli() -> str | None:
    """The ``wandb`` command of this environment."""
    exe = Path(sys.executable).with_name("wandb")
    return str(exe) if exe.exists() else shutil.which("wandb")


def offline_steps(log_dir: Path, timeout_s: float = 120.0) -> list[int]:
    """The ``_step`` of every history record in one offline run directory (``offline-run-*``), read with W&B's
    reader; [] when there are none or it cannot be read."""
    exe = wandb_cli()
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "leet", "inspect", "--json", str(log_dir)], capture_output=True, text=True,
                             timeout=timeout_s).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    steps = []
    for line in out.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        item = rec.get("history", {}).get("item") if isinstance(rec, dict) and rec.get("type") == "history" else None
        if isinstance(item, dict) and isinstance(item.get("_step"), (int, float)):
            steps.append(int(item["_step"]))
    return steps


def kept_through(run: Any, run_dir: Path, run_id: str) -> int:
    """The last step W&B holds of run ``run_id`` (-1: none). Online: the resumed run's step counter (the
    server's); offline: the earlier transaction logs of this run id under ``run_dir/wandb``."""
    if not getattr(run, "offline", False):
        return int(getattr(run, "starting_step", 0) or getattr(run, "step", 0) or 0) - 1
    last = -1
    for log_dir in sorted((run_dir / WANDB).glob(f"offline-run-*-{run_id}")):
        last = max([last, *offline_steps(log_dir)])
    return last


def _records(path: Path, after: int, through: int) -> list[dict[str, Any]]:
    out = []
    if not path.exists():
        return out
    for line in path.read_bytes().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and after < rec["step"] <= through:
            out.append(rec)
    return out


def local_rows(run_dir: Path, after: int, through: int) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """``(step, scalars, histograms)`` of every step in (``after``, ``through``] the local record holds, in step
    order: the scalars of ``metrics.jsonl`` and the score histograms of ``scores.jsonl`` (layer -> histogram)."""
    scalars: dict[int, dict[str, Any]] = defaultdict(dict)
    hists: dict[int, dict[str, Any]] = defaultdict(dict)
    for rec in _records(run_dir / METRICS, after, through):
        scalars[rec["step"]].update({k: v for k, v in rec.items() if k != "step"})
    for rec in _records(run_dir / SCORES, after, through):
        if isinstance(rec.get("layer"), str):
            hists[rec["step"]][rec["layer"]] = rec
    return [(s, scalars.get(s, {}), hists.get(s, {})) for s in sorted(set(scalars) | set(hists))]
