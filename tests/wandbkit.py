"""Real offline W&B runs in tests: a clean environment (no credentials), the app as a subprocess, and W&B's own
reader (``wandb leet inspect``) for what a run logged."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

WANDB_ENV = ("WANDB_API_KEY", "WANDB_MODE", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL", "WANDB_DIR", "NETRC",
             "WANDB_SILENT", "WANDB_CONFIG_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_ID", "WANDB_RESUME")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """No W&B credentials or settings from this machine: a fresh HOME (no ~/.netrc), no WANDB_* variables."""
    env = {k: v for k, v in os.environ.items() if k not in WANDB_ENV and k != "HYDRA_FULL_ERROR"}
    home.mkdir(parents=True, exist_ok=True)
    env.update({"HOME": str(home), "OMP_NUM_THREADS": "1", "WANDB_CONFIG_DIR": str(home / ".config" / "wandb")})
    env.update(extra)
    return env


def run_app(args: list[str], cwd: Path, env: dict[str, str], code: str | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "prunelab", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def wandb_exe() -> str:
    exe = Path(sys.executable).with_name("wandb")
    return str(exe) if exe.exists() else (shutil.which("wandb") or "wandb")


def inspect_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a run's .wandb log, as W&B's reader prints them."""
    out = subprocess.run([wandb_exe(), "leet", "inspect", "--json", str(path)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def inspect_summary(path: Path) -> dict[str, Any]:
    out = subprocess.run([wandb_exe(), "leet", "inspect", "--summary", "--json", str(path)], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    return json.loads(out)


def history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["history"]["item"] for r in records if r["type"] == "history"]


def run_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r["run"] for r in records if r["type"] == "run")


def exit_code(records: list[dict[str, Any]]) -> int:
    (code,) = [r["exit"].get("exit_code", 0) for r in records if r["type"] == "exit"]
    return code


def offline_dirs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))
