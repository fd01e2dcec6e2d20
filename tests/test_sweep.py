"""Sweeps: a failing job never costs the others; the cluster launcher config composes."""
from __future__ import annotations

import json

import pytest

from appkit import FAST, cli


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    # job 1 diverges (lr 1e6: the loss becomes NaN, the job raises NonFiniteLoss); jobs 0 and 2 are fine
    proc = cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=none", *FAST,
                "optimizer.lr=0.05,1e6,0.01", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=600)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("prunelab: error: sweep=") and "1 failed job(s)" in last, last
    jobs = {p.name: json.loads((p / "summary.json").read_text()) for p in sweep.iterdir() if p.is_dir()}
    assert len(jobs) == 3
    (failed,) = [name for name, s in jobs.items() if s["status"] != "finished"]
    assert failed.startswith("1_") and failed in last
    assert "NonFiniteLoss" in jobs[failed]["error"]
    assert all(s["status"] == "finished" and s["test/acc"] > 0.5 for n, s in jobs.items() if n != failed)


def test_slurm_launcher_config_composes(tmp_path):
    proc = cli(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "--cfg", "hydra"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "SlurmLauncher" in out and "partition: gpu" in out
    for key in ("gpus_per_node: 1", "cpus_per_task: 8", "timeout_min: 240", "array_parallelism: 32"):
        assert key in out


def test_experiment_preset_sets_the_sweep(tmp_path):
    proc = cli(["+experiment=criteria_digits", "--cfg", "hydra"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "criterion: magnitude,gradient,snip,snip_momentum,random" in proc.stdout
    assert "schedule.target_sparsity: 0.0,0.5,0.75,0.875,0.9375,0.96875" in proc.stdout
    assert "JoblibLauncher" in proc.stdout
    job = cli(["+experiment=criteria_digits", "--cfg", "job"], cwd=tmp_path)
    assert "group: criteria_digits" in job.stdout
