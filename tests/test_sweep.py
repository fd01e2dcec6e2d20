"""Sweeps: a failing job, or one the OS kills, never costs the others; a re-run sweep (in any order, with
trainer.resume=auto) reuses its finished jobs and resumes the others; another sweep into the same directory is
refused; the cluster launcher config composes."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from appkit import FAST, cli, faulty, metrics


def _jobs(sweep: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / "summary.json").read_text()) for p in sweep.iterdir()
            if p.is_dir() and not p.name.startswith(".")}


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    # job 1 diverges (lr 1e6: the loss becomes NaN, the job raises NonFiniteLoss); jobs 0 and 2 are fine
    proc = cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=none", *FAST,
                "optimizer.lr=0.05,1e6,0.01", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("prunelab: error: sweep=") and "1 failed job(s)" in last, last
    jobs = _jobs(sweep)
    assert len(jobs) == 3
    (failed,) = [name for name, s in jobs.items() if s["status"] != "finished"]
    assert failed in last and "NonFiniteLoss" in jobs[failed]["error"]
    assert all(s["status"] == "finished" and s["test/acc"] > 0.5 for n, s in jobs.items() if n != failed)


@pytest.mark.slow
def test_a_job_killed_by_the_os_costs_no_other_and_a_rerun_continues_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    base = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=none", *FAST,
            f"hydra.sweep.dir={sweep}"]
    # the snip job is killed (SIGKILL, as the OOM killer does) at step 30, after its checkpoint of step 19, while
    # the magnitude job runs beside it; the random job starts after
    proc = cli([*base, "criterion=magnitude,snip,random"], cwd=tmp_path, timeout=600, **faulty("kill@30@snip"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    jobs = _jobs(sweep)
    assert len(jobs) == 3 and last.startswith(f"prunelab: error: sweep={sweep}: 1 failed job(s): snip-s0.9-seed0_")
    killed = next(n for n in jobs if n.startswith("snip"))
    assert jobs[killed]["status"] == "failed" and "SIGKILL" in jobs[killed]["error"]
    assert all(s["status"] == "finished" for n, s in jobs.items() if n != killed)
    finished = {n: _digest(sweep / n) for n in jobs if n != killed}

    # the same sweep again without resume=auto is refused (nothing of it changes)
    before = _digest(sweep)
    again = cli([*base, "criterion=random,snip,magnitude"], cwd=tmp_path)
    assert again.returncode == 2 and "trainer.resume=auto" in again.stderr.strip().splitlines()[-1]
    # another sweep into this directory is refused too, with resume=auto or not
    other = cli([*base, "criterion=magnitude,gradient", "trainer.resume=auto"], cwd=tmp_path)
    lines = other.stderr.strip().splitlines()
    assert other.returncode == 2 and len(lines) == 1 and "a directory without another sweep" in lines[0], lines
    assert _digest(sweep) == before

    # re-run in another order with resume=auto: the finished jobs are returned as they are (the same config, found
    # by its directory's fingerprint), the killed one resumes from its checkpoint
    rerun = cli([*base, "criterion=random,snip,magnitude", "trainer.resume=auto"], cwd=tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "3 of 3 jobs finished" in rerun.stderr
    jobs = _jobs(sweep)
    assert all(s["status"] == "finished" for s in jobs.values()) and len(jobs) == 3
    assert all(_digest(sweep / n) == d for n, d in finished.items())
    assert jobs[killed]["attempt"] == 2 and jobs[killed]["criterion"] == "snip"
    steps = [r["step"] for r in metrics(sweep / killed)]
    assert steps == sorted(set(steps)) and steps[-1] == 59


def test_slurm_launcher_config_composes(tmp_path):
    proc = cli(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "CheckedSlurmLauncher" in out and "partition: gpu" in out
    for key in ("gpus_per_node: 1", "cpus_per_task: 8", "timeout_min: 240", "array_parallelism: 32"):
        assert key in out


def test_experiment_preset_sets_the_sweep(tmp_path):
    proc = cli(["+experiment=criteria_digits", "--cfg", "hydra"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "criterion: magnitude,gradient,snip,snip_momentum,random" in proc.stdout
    assert "schedule.target_sparsity: 0.0,0.5,0.75,0.875,0.9375,0.96875" in proc.stdout
    assert "ProcessJoblibLauncher" in proc.stdout
    job = cli(["+experiment=criteria_digits", "--cfg", "job"], cwd=tmp_path)
    assert "group: criteria_digits" in job.stdout
