"""Tracking: where a run's metrics, score distributions, masks and summary go.

The trainer reports to a :class:`Tracker` and knows nothing of W&B; the tracker knows nothing of training.
Backends: :class:`LocalTracker` (always on: ``metrics.jsonl``, ``scores.jsonl``, ``summary.json``, ``masks.pt``
in the run directory), :class:`ConsoleTracker` (progress bar or plain lines), and the W&B backend. A
:class:`Trackers` fans one call out to several.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


class Tracker:
    """What the trainer calls. Every method is a no-op here, so this class is the no-op tracker."""

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """Scalars at a global step (names such as ``train/loss``, ``sparsity/actual``)."""

    def log_scores(self, scores: Mapping[str, Tensor], step: int) -> None:
        """The criterion's scores at a pruning or score-logging step (one tensor per layer)."""

    def log_final(self, masks: Mapping[str, Tensor], summary: Mapping[str, Any]) -> None:
        """The final masks and the run summary."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore after a resume (e.g. drop records past the checkpoint's step)."""

    def finish(self, status: str = "finished") -> None:
        """Close the run (``finished``, ``failed`` or ``interrupted``)."""


class Trackers(Tracker):
    """Several trackers behind one interface."""

    def __init__(self, *trackers: Tracker) -> None:
        self.trackers = [t for t in trackers if t is not None]

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for t in self.trackers:
            t.log(metrics, step)

    def log_scores(self, scores: Mapping[str, Tensor], step: int) -> None:
        for t in self.trackers:
            t.log_scores(scores, step)

    def log_final(self, masks: Mapping[str, Tensor], summary: Mapping[str, Any]) -> None:
        for t in self.trackers:
            t.log_final(masks, summary)

    def state_dict(self) -> dict[str, Any]:
        return {type(t).__name__: t.state_dict() for t in self.trackers}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for t in self.trackers:
            t.load_state_dict(state.get(type(t).__name__, {}))

    def finish(self, status: str = "finished") -> None:
        errors = []
        for t in self.trackers:
            try:
                t.finish(status)
            except Exception as exc:  # one backend failing to close must not keep the others open
                errors.append(exc)
        if errors:
            raise errors[0]


@torch.no_grad()
def score_histogram(scores: Tensor, bins: int = 64, log_scale: bool = True) -> dict[str, Any]:
    """A fixed-bin histogram of one score tensor, computed on its device.

    Scores span orders of magnitude, so by default the bins are over log10(score) of the positive scores, and
    zeros (pruned weights under magnitude/snip) are counted separately in ``zeros``; ``counts`` plus ``zeros``
    add up to the tensor's element count. Returns ``counts`` (list of ``bins`` ints), ``edges`` (``bins + 1``
    floats, log10 units when ``log_scale``), ``zeros``, ``numel``, ``log_scale``.
    """
    x = scores.detach().reshape(-1).float()
    numel = x.numel()
    if log_scale:
        pos = x[x > 0]
        zeros = numel - pos.numel()
        x = pos.log10()
    else:
        zeros = 0
    if x.numel() == 0:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = (float(v) for v in torch.stack([x.min(), x.max()]).tolist())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        x = x[torch.isfinite(x)]
        lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    counts = torch.histc(x, bins=bins, min=lo, max=hi).to(torch.int64)
    # histc drops values outside [lo, hi] (non-finite ones); count them with the zeros so nothing is lost
    missing = numel - zeros - int(counts.sum())
    step = (hi - lo) / bins
    return {
        "counts": counts.tolist(),
        "edges": [lo + i * step for i in range(bins + 1)],
        "zeros": int(zeros + missing),
        "numel": int(numel),
        "log_scale": bool(log_scale),
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else (1e308 if v > 0 else -1e308)
    return v


class LocalTracker(Tracker):
    """Always-on local record in the run directory, so runs compare without W&B.

    * ``metrics.jsonl``: one JSON object per logged step, ``{"step": t, name: value, ...}``.
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
        rec = {"step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        self._last_step = max(self._last_step, int(step))

    def log_scores(self, scores: Mapping[str, Tensor], step: int) -> None:
        with self.scores_path.open("a") as f:
            for name, hist in histograms(scores, self.bins, self.log_scale).items():
                f.write(json.dumps({"step": int(step), "layer": name, **hist}) + "\n")

    def log_final(self, masks: Mapping[str, Tensor], summary: Mapping[str, Any]) -> None:
        torch.save({n: m.detach().cpu().bool() for n, m in masks.items()}, self.run_dir / "masks.pt")
        write_json_atomic(self.run_dir / "summary.json", summary)

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


def histograms(scores: Mapping[str, Tensor], bins: int, log_scale: bool) -> dict[str, dict[str, Any]]:
    """One histogram per layer plus ``all`` over every layer's scores together."""
    out = {name: score_histogram(s, bins, log_scale) for name, s in scores.items()}
    if scores:
        out["all"] = score_histogram(torch.cat([s.reshape(-1) for s in scores.values()]), bins, log_scale)
    return out


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON via a temporary file, fsync and rename: a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        json.dump(obj, f, indent=2, default=_jsonable)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class ConsoleTracker(Tracker):
    """Progress: a tqdm bar (step, loss, accuracy, sparsity) on a terminal; plain lines every ``every`` steps
    otherwise (pipes, CI, multirun jobs)."""

    def __init__(self, total_steps: int, every: int = 50, bar: bool | None = None, start_step: int = 0) -> None:
        self.total = total_steps
        self.every = max(1, every)
        self.bar = sys.stderr.isatty() if bar is None else bar
        self._shown: dict[str, float] = {}
        self._t0 = time.perf_counter()
        self._pbar = None
        if self.bar:
            from tqdm.auto import tqdm

            self._pbar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, leave=False)
        self._last = start_step

    _SHOW = {"train/loss": "loss", "train/acc": "acc", "eval/acc": "val_acc", "sparsity/actual": "sparsity"}

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for k, short in self._SHOW.items():
            if k in metrics and metrics[k] is not None:
                self._shown[short] = float(metrics[k])
        if self._pbar is not None:
            self._pbar.update(step + 1 - self._last)
            self._last = step + 1
            self._pbar.set_postfix({k: f"{v:.4g}" for k, v in self._shown.items()}, refresh=False)
        elif (step + 1) % self.every == 0 or step + 1 == self.total:
            shown = "  ".join(f"{k}={v:.4g}" for k, v in self._shown.items())
            print(f"[prunelab] step {step + 1}/{self.total}  {shown}  ({time.perf_counter() - self._t0:.1f}s)",
                  file=sys.stderr, flush=True)

    def finish(self, status: str = "finished") -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None


def build_tracker(cfg: Any, run_dir: str | os.PathLike, total_steps: int, name: str) -> Tracker:
    """The trackers a run's config asks for: always local files and console progress; W&B with logger=wandb."""
    tr = cfg.get("tracking", {}) or {}
    trackers: list[Tracker] = [
        LocalTracker(run_dir, bins=int(tr.get("histogram_bins", 64)),
                     log_scale=tr.get("histogram_scale", "log10") == "log10"),
    ]
    progress = cfg.trainer.get("progress", "auto")
    if progress != "none":
        bar = None if progress == "auto" else progress == "bar"
        trackers.append(ConsoleTracker(total_steps, every=max(50, total_steps // 20), bar=bar))
    return Trackers(*trackers)
