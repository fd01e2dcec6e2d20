"""Data-parallel training with torchrun (gloo on CPU) and cluster-style sweeps through submitit."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from appkit import FAST, cli, env, metrics, summary

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
SHORT = ["trainer.progress=none", "criterion=snip_momentum", "trainer.max_steps=60", "schedule.start_step=10",
         "schedule.end_step=40", "schedule.pruning_frequency=10", "trainer.eval_every=20", "trainer.log_every=5",
         "trainer.deterministic=true"]


def torchrun(args: list[str], cwd: Path, timeout: float = 300, script: str | None = None) -> subprocess.CompletedProcess:
    target = [script] if script else ["-m", "prunelab"]
    return subprocess.run([*TORCHRUN, *target, *args], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path):
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    # check_masks: at every pruning step the ranks all-reduce a mask checksum and fail on any difference
    proc = torchrun([*SHORT, "trainer.batch_size=32", "trainer.check_masks=true", "trainer.checkpoint_every=20",
                     "logger=wandb", f"hydra.run.dir={ddp_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = cli([*SHORT, "trainer.batch_size=64", "logger=none", f"hydra.run.dir={single_dir}"], cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]

    s = summary(ddp_dir)
    assert s["world_size"] == 2 and s["global_batch_size"] == 64 and s["batch_size"] == 32
    assert "32 x 2 ranks = 64" in proc.stdout
    # Same data, same global batch: DDP averages the two half-batch gradients, the single process takes the mean
    # over the whole batch. Equal in exact arithmetic; float32 summation order differs (~1e-7 relative per step),
    # and 60 SGD steps with momentum amplify that to ~1e-6..1e-5, hence atol 1e-4. The masks must be identical.
    m_ddp = torch.load(ddp_dir / "masks.pt", weights_only=True)
    m_one = torch.load(single_dir / "masks.pt", weights_only=True)
    assert m_ddp.keys() == m_one.keys() and all(torch.equal(m_ddp[k], m_one[k]) for k in m_ddp)
    w_ddp = torch.load(ddp_dir / "checkpoint.pt", weights_only=True)["model"]
    w_one = torch.load(single_dir / "checkpoint.pt", weights_only=True)["model"]
    for k in w_one:
        assert torch.allclose(w_ddp[k], w_one[k], atol=1e-4, rtol=0), k
    # one W&B run and one metrics.jsonl, with every logged step once
    assert len(list((ddp_dir / "wandb").glob("offline-run-*"))) == 1
    steps = [r["step"] for r in metrics(ddp_dir)]
    assert len(steps) == len(set(steps)) and steps == sorted(steps)
    assert [r["step"] for r in metrics(ddp_dir)] == [r["step"] for r in metrics(single_dir)]


KILL_RANK = textwrap.dedent("""
    import os, signal, sys
    from prunelab import pruner
    begin = pruner.Pruner.on_step_begin
    def on_step_begin(self, step=None):
        if step == 45 and os.environ.get("RANK") == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        return begin(self, step)
    pruner.Pruner.on_step_begin = on_step_begin
    from prunelab.__main__ import cli
    sys.argv = ["prunelab", *sys.argv[1:]]
    cli()
""")


@pytest.mark.slow
def test_killing_one_rank_ends_the_job_and_it_resumes(tmp_path):
    driver = tmp_path / "kill_rank.py"
    driver.write_text(KILL_RANK)
    run_dir = tmp_path / "run"
    args = [*SHORT, "trainer.batch_size=32", "logger=none", "trainer.checkpoint_every=20", f"hydra.run.dir={run_dir}"]
    t0 = time.monotonic()
    proc = torchrun(args, cwd=tmp_path, timeout=180, script=str(driver))
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 150  # ended by torchrun, no hang
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 39
    resumed = torchrun([*args, "trainer.resume=true"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert summary(run_dir)["status"] == "finished"
    steps = [r["step"] for r in metrics(run_dir)]
    assert len(steps) == len(set(steps)) and steps[-1] == 59


@pytest.mark.slow
def test_submitit_local_multirun_completes_two_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = cli(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "logger=none",
                "criterion=magnitude,snip", *FAST, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = sorted(p.parent.name for p in sweep.glob("*/summary.json"))
    assert len(done) == 2
    assert {json.loads((sweep / d / "summary.json").read_text())["criterion"] for d in done} == {"magnitude", "snip"}


def test_mask_checksum_sees_a_single_flipped_entry():
    from prunelab.training.distributed import masks_checksum

    a = {"x": torch.ones(4, 4, dtype=torch.bool), "y": torch.zeros(3, dtype=torch.bool)}
    b = {k: v.clone() for k, v in a.items()}
    assert masks_checksum(a) == masks_checksum(b)
    b["x"][2, 1] = False
    assert masks_checksum(a) != masks_checksum(b)
    c = {k: v.clone() for k, v in a.items()}
    c["x"][0, 0], c["y"][0] = False, True  # same count kept, different positions
    assert masks_checksum(a) != masks_checksum(c)
