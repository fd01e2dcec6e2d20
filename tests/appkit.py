"""Running the real app in tests: as a CLI subprocess (what a user types) or composed in-process (faster)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

# a short run: 60 steps, pruning every 10 steps from 10 to 40
FAST = [
    "trainer.max_steps=60", "schedule.start_step=10", "schedule.end_step=40", "schedule.pruning_frequency=10",
    "trainer.eval_every=20", "trainer.progress=none",
]


def env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: offline W&B, no inherited W&B settings, one thread per process."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") and k != "HYDRA_FULL_ERROR"}
    e.update({"WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"})
    e.update(extra)
    return e


def cli(args: list[str], cwd: str | Path, timeout: float = 300, **extra_env: str) -> subprocess.CompletedProcess:
    """``python -m prunelab ARGS`` in ``cwd``; returns the finished process (text output captured)."""
    return subprocess.run([sys.executable, "-m", "prunelab", *args], cwd=cwd, env=env(**extra_env),
                          capture_output=True, text=True, timeout=timeout)


def compose(overrides: list[str]) -> Any:
    """The app's config, composed by Hydra in-process."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("prunelab.conf", version_base=None):
        return hydra_compose("config", overrides=overrides)


def run_inprocess(overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """Compose and run one experiment in this process; returns its summary."""
    from prunelab.app import run

    torch.set_num_threads(1)
    return run(compose(overrides), run_dir)


def summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def zeros_and_total(masks: dict[str, torch.Tensor]) -> tuple[int, int]:
    return sum(int((~m).sum()) for m in masks.values()), sum(m.numel() for m in masks.values())
