"""Data-parallel training with torchrun (gloo on CPU) and cluster-style sweeps through submitit."""
from __future__ import annotations

import json
import time

import pytest
import torch

from appkit import FAST, cli, faulty, metrics, ranks_output, summary, torchrun

SHORT = ["trainer.progress=none", "criterion=snip_momentum", "trainer.max_steps=60", "schedule.start_step=10",
         "schedule.end_step=40", "schedule.pruning_frequency=10", "trainer.eval_every=20", "trainer.log_every=5",
         "trainer.deterministic=true"]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """An uninterrupted 2-rank run (and its stdout)."""
    base = tmp_path_factory.mktemp("ddp")
    # check_masks: at every pruning step the ranks all-reduce a mask checksum and fail on any difference
    proc = torchrun([*SHORT, "trainer.batch_size=32", "trainer.check_masks=true", "trainer.checkpoint_every=20",
                     "logger=wandb", f"hydra.run.dir={base / 'ddp'}"], cwd=base)
    assert proc.returncode == 0, ranks_output(proc)
    return base / "ddp", proc


@pytest.mark.slow
def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path, ddp_run):
    ddp_dir, single_dir = ddp_run[0], tmp_path / "single"
    proc = ddp_run[1]
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


@pytest.mark.slow
def test_a_killed_rank_ends_the_job_and_it_resumes_exactly(tmp_path, ddp_run):
    """Rank 1 is killed at step 45; the checkpoint of step 35 falls inside a log window (every 5 steps), so the
    next train/loss needs every rank's own accumulators back. The 2-rank checkpoint refuses 1 process. The resume
    takes the fused step."""
    run_dir = tmp_path / "run"
    args = [*SHORT, "trainer.batch_size=32", "logger=none", "trainer.checkpoint_every=18", f"hydra.run.dir={run_dir}"]
    t0 = time.monotonic()
    proc = torchrun(args, cwd=tmp_path, timeout=180, **faulty("kill@45@rank1"))
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 150  # ended by torchrun, no hang
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 35
    one = cli([*args, "trainer.resume=true"], cwd=tmp_path)
    lines = one.stderr.strip().splitlines()
    assert one.returncode == 2 and len(lines) == 1 and "Traceback" not in one.stderr, one.stderr[-2000:]
    assert "trainer.resume" in lines[0] and "1 process" in lines[0] and "2 data-parallel processes" in lines[0]
    # resumed with trainer.fused_step (an execution key): each rank's compiled SGD step, masks and scores are the
    # eager ones bitwise, so the run still ends exactly where the uninterrupted eager run did
    resumed = torchrun([*args, "trainer.resume=true", "trainer.fused_step=true"], cwd=tmp_path)
    assert resumed.returncode == 0, ranks_output(resumed)
    assert "trainer.fused_step: compiling the step" in resumed.stdout + resumed.stderr
    assert summary(run_dir)["status"] == "finished"
    assert (run_dir / "metrics.jsonl").read_bytes() == (ddp_run[0] / "metrics.jsonl").read_bytes()
    final, ref = (torch.load(d / "checkpoint.pt", weights_only=True)["model"] for d in (run_dir, ddp_run[0]))
    assert all(torch.equal(final[k], ref[k]) for k in ref)


@pytest.mark.slow
def test_submitit_local_multirun_survives_a_killed_job(tmp_path):
    """Two jobs as local submitit processes; the snip one is killed by a signal at step 30: recorded as failed,
    listed, the other finished, no traceback."""
    sweep = tmp_path / "sweep"
    proc = cli(["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "logger=none",
                "criterion=magnitude,snip", *FAST, f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=600,
               **faulty("kill@30@snip"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "UncompletedJobError" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"prunelab: error: sweep={sweep}: 1 failed job(s): snip-s0.90-seed0_"), last
    jobs = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    assert {s["status"] for n, s in jobs.items() if n.startswith("magnitude")} == {"finished"}
    (killed,) = [s for n, s in jobs.items() if n.startswith("snip")]
    assert killed["status"] == "failed" and "JobLost" in killed["error"]


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


def test_fit_leaves_no_reference_cycle_holding_the_trained_net(tmp_path):
    """Under DDP the trained net holds the process group. Were it left in a reference cycle, it would be freed by
    whichever garbage collection came next, after ``destroy_process_group`` or during interpreter exit, where a
    gloo group's teardown can abort the process. With the collector off, what ``fit`` built must be freed by
    reference counting alone once it returns."""
    import gc

    from prunelab.training.trainer import Loop
    from trainkit import train_digits

    train_digits(tmp_path / "first", steps=8, criterion="magnitude")  # what the first run imports is not fit's
    gc.collect()
    gc.disable()
    try:
        train_digits(tmp_path / "second", steps=8, criterion="magnitude")
        left = [o for o in gc.get_objects() if isinstance(o, Loop)]
    finally:
        gc.enable()
    assert left == []
