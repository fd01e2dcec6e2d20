"""Console progress: a tqdm bar on a terminal, plain lines otherwise."""
from __future__ import annotations

import sys
import time
from collections.abc import Mapping

from .base import Tracker


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
        values = {short: self._shown[short] for short in self._SHOW.values() if short in self._shown}  # fixed order,
        # whichever came first (a resumed run's first row may hold an evaluation and no training loss yet)
        if self._pbar is not None:
            self._pbar.update(step + 1 - self._last)
            self._last = step + 1
            self._pbar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        elif (step + 1) % self.every == 0 or step + 1 == self.total:
            shown = "  ".join(f"{k}={v:.4g}" for k, v in values.items())
            print(f"[prunelab] step {step + 1}/{self.total}  {shown}  ({time.perf_counter() - self._t0:.1f}s)",
                  file=sys.stderr, flush=True)

    def finish(self, status: str = "finished") -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
