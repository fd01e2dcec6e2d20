"""Sweeps: a Hydra callback that ends a multirun by listing its failed jobs.

Jobs of a multirun never raise (a failure is recorded in the job's ``summary.json`` and W&B run, so the other
jobs go on, whatever the launcher); at the end this callback reads every job's ``summary.json`` from the sweep
directory, prints the jobs that did not finish, and exits non-zero if there are any.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

EXIT_FAILED_JOBS = 1


def job_statuses(sweep_dir: str | Path) -> dict[str, str]:
    """Job directory name -> status (finished, failed, interrupted, unfinished) for every job of a sweep."""
    out: dict[str, str] = {}
    for job in sorted(Path(sweep_dir).iterdir()) if Path(sweep_dir).is_dir() else []:
        if not job.is_dir() or not ((job / ".hydra").is_dir() or (job / "summary.json").exists()):
            continue
        try:
            summary = json.loads((job / "summary.json").read_text())
            out[job.name] = str(summary.get("status", "unfinished"))
            if summary.get("error"):
                out[job.name] += f": {summary['error'].splitlines()[0]}"
        except (OSError, ValueError):
            out[job.name] = "unfinished (no summary.json)"
    return out


class FailedJobs(Callback):
    """Lists the failed jobs when a multirun ends; exits non-zero if any failed."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        statuses = job_statuses(sweep_dir)
        failed = {name: st for name, st in statuses.items() if not st.startswith("finished")}
        print(f"[prunelab] sweep {sweep_dir}: {len(statuses) - len(failed)} of {len(statuses)} jobs finished",
              file=sys.stderr, flush=True)
        if failed:
            for name, st in failed.items():
                print(f"[prunelab]   failed job {name}: {st}", file=sys.stderr)
            print(f"prunelab: error: sweep={sweep_dir}: {len(failed)} failed job(s): {', '.join(failed)}",
                  file=sys.stderr, flush=True)
            sys.exit(EXIT_FAILED_JOBS)
