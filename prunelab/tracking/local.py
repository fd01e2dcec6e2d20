"""The always-on local record of a run: ``metrics.jsonl``, ``scores.jsonl``, ``summary.json``, ``masks.pt``."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..rundir import jsonable, write_json_atomic
from .base import Tracker, final_row
from .histograms import histograms


class LocalTracker(Tracker):
    """Always-on local record in the run directory, so runs compare without W&B.

    * ``metrics.jsonl``: one JSON object per logged step, ``{"step": t, name: value, ...}``; the last step's object
      also holds the summary's :func:`~prunelab.tracking.base.final_row` (test accuracy, compression), as the W&B
      history does.
    * ``scores.jsonl``: one object per (step, layer) score histogram (and ``all`` for every layer together).
    * ``summary.json``: the run summary; ``masks.pt``: the final bool masks by layer name.
    """

    def __init__(self, run_dir: str | os.PathLike, bins: int = 64, log_scale: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.bins, self.log_scale = bins, log_scale
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.scores_path = self.run_dir / "scores.jsonl"
        self._pending: dict[int, dict[str, Any]] = {}
        self._last_step = -1

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        rec = {"step": int(step), **{k: jsonable(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        self._last_step = max(self._last_step, int(step))

    @property
    def histogram_settings(self) -> tuple[int, bool]:  # type: ignore[override]
        return (self.bins, self.log_scale)

    def log_scores(self, scores: Mapping[str, Tensor], step: int) -> None:
        self.log_histograms(histograms(scores, self.bins, self.log_scale), step)

    def log_histograms(self, hists: Mapping[str, Mapping[str, Any]], step: int) -> None:
        with self.scores_path.open("a") as f:
            for name, hist in hists.items():
                f.write(json.dumps({"step": int(step), "layer": name, **hist}) + "\n")

    def log_final(self, masks: Mapping[str, Tensor], summary: Mapping[str, Any]) -> None:
        self._add_to_last_record(final_row(summary))
        torch.save({n: m.detach().cpu().bool() for n, m in masks.items()}, self.run_dir / "masks.pt")
        write_json_atomic(self.run_dir / "summary.json", summary)

    def _add_to_last_record(self, values: Mapping[str, float]) -> None:
        """Merge ``values`` into the record of the last logged step (a new record at that step if it has none),
        rewriting ``metrics.jsonl`` through a temporary file."""
        if not values:
            return
        step = max(self._last_step, 0)
        lines = self.metrics_path.read_text().splitlines() if self.metrics_path.exists() else []
        lines = [ln for ln in lines if ln.strip()]
        last = json.loads(lines[-1]) if lines else {}
        if last.get("step") == step:
            lines[-1] = json.dumps({**last, **values})
        else:
            lines.append(json.dumps({"step": step, **values}))
        tmp = self.metrics_path.with_suffix(".tmp")
        tmp.write_text("".join(ln + "\n" for ln in lines))
        os.replace(tmp, self.metrics_path)

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """After a resume from step s, drop the records of steps > s so no step is written twice."""
        last = int(state.get("last_step", -1))
        for path in (self.metrics_path, self.scores_path):
            if path.exists():
                kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= last]
                tmp = path.with_suffix(".tmp")
                tmp.write_text("".join(ln + "\n" for ln in kept))
                os.replace(tmp, path)
        self._last_step = last
