"""Running the real app in tests: as a CLI subprocess (what a user types) or composed in-process (faster)."""
from __future__ import annotations

import hashlib
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


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def torchrun(args: list[str], cwd: str | Path, timeout: float = 300, script: str | None = None,
             **extra_env: str) -> subprocess.CompletedProcess:
    """Two ranks of ``python -m prunelab ARGS`` (or of ``script``) under torchrun, gloo on the CPU. Python's fault
    handler is on, so a rank that aborts prints where each of its threads was."""
    target = [script] if script else ["-m", "prunelab"]
    return subprocess.run([*TORCHRUN, *target, *args], cwd=cwd, env=env(PYTHONFAULTHANDLER="1", **extra_env),
                          capture_output=True, text=True, timeout=timeout)


def ranks_output(proc: subprocess.CompletedProcess, chars: int = 3000) -> str:
    """A failed torchrun's stderr for an assertion message: the end of what the ranks printed, then the end of
    torchrun's own report (which names the failing rank and would otherwise fill the message)."""
    lines = proc.stderr.splitlines(keepends=True)
    agent = next((i for i, line in enumerate(lines) if "torch/distributed/elastic/" in line), len(lines))
    return "".join(lines[:agent])[-chars:] + "\n[torchrun] " + "".join(lines[agent:])[-600:]


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


def tree_digest(root: Path, skip: tuple[str, ...] = (".lock",)) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest), less the names in ``skip`` (the lock file,
    which every command that looks at a run directory touches)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def zeros_and_total(masks: dict[str, torch.Tensor]) -> tuple[int, int]:
    return sum(int((~m).sum()) for m in masks.values()), sum(m.numel() for m in masks.values())


FAULTS = Path(__file__).parent / "faults"


def faulty(spec: str) -> dict[str, str]:
    """Extra environment for :func:`cli` that makes every Python process of the run inject ``spec``
    (``tests/faults/sitecustomize.py``)."""
    path = os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH", "")]))
    return {"PYTHONPATH": path, "PRUNELAB_FAULTS": spec}


def wandb_exe() -> str:
    exe = Path(sys.executable).with_name("wandb")
    return str(exe) if exe.exists() else "wandb"


def wandb_records(log_dir: Path) -> list[dict[str, Any]]:
    """Every record of one offline W&B run directory, as W&B's own reader prints them."""
    out = subprocess.run([wandb_exe(), "leet", "inspect", "--json", str(log_dir)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wandb_history(run_dir: Path) -> tuple[set[str], list[dict[str, Any]]]:
    """The run ids and the history rows of every offline W&B run under ``run_dir/wandb``, in the order W&B holds
    them (offline directories by name, i.e. by start time). Left out: W&B's wall-clock keys and the random ids it
    gives a table's artifact (``*artifact_path``), which differ between any two runs."""
    ids, rows = set(), []
    for log_dir in sorted((run_dir / "wandb").glob("offline-run-*")):
        for rec in wandb_records(log_dir):
            if rec["type"] == "run":
                ids.add(rec["run"]["run_id"])
            elif rec["type"] == "history":
                item = rec["history"]["item"]
                rows.append({k: v for k, v in item.items() if k not in ("_runtime", "_timestamp")
                             and not k.startswith("_wandb") and not k.endswith("artifact_path")})
    return ids, rows


def parallel(calls: list[tuple[list[str], Path, dict[str, str]]], workers: int = 3) -> list[subprocess.CompletedProcess]:
    """Several :func:`cli` calls at once: ``(args, cwd, extra_env)`` each."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda c: cli(c[0], cwd=c[1], **c[2]), calls))
