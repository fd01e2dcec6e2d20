"""A run killed with SIGKILL (mid-run or mid-checkpoint-write) or stopped with SIGTERM at an arbitrary step resumes
bitwise-identically: weights, masks, criterion state, metrics.jsonl, scores.jsonl and the W&B history, under one
W&B run id, with trainer.resume=true and auto.

The runs draw noise from torch's, numpy's and Python's global RNGs in every training batch (``noise``,
tests/faults/sitecustomize.py) and log every 7 steps while they checkpoint at every evaluation (every 50 steps,
the default period), so a resume that did not restore the RNG states or the train-metric accumulators of a log
window differs. The kill steps come from a seed printed by the test (set PRUNELAB_TEST_SEED to replay one).
Apart from tests/test_reliability.py (a finished or foreign directory, a NaN loss) so that the two share the
workers of a parallel run.
"""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest
import torch

from appkit import cli, faulty, summary, tree_digest, wandb_history

# 150 deterministic steps, pruning every 10 from 20 to 100, evaluation (and so a checkpoint) every 50 steps, a log
# every 7: the checkpoints at steps 49 and 99 fall inside log windows
RUN = [
    "logger=wandb", "trainer.progress=none", "trainer.deterministic=true", "trainer.max_steps=150",
    "schedule.start_step=20", "schedule.end_step=100", "schedule.pruning_frequency=10", "trainer.eval_every=50",
    "trainer.log_every=7",
]
SEED = int(os.environ.get("PRUNELAB_TEST_SEED") or random.randrange(2**31))


def _final_state(run_dir: Path) -> dict:
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    ids, rows = wandb_history(run_dir)
    return {
        "model": ck["model"], "masks": torch.load(run_dir / "masks.pt", weights_only=True),
        "criterion": ck["pruner"]["criterion"], "step": ck["step"],
        "metrics": (run_dir / "metrics.jsonl").read_bytes(), "scores": (run_dir / "scores.jsonl").read_bytes(),
        "wandb_ids": ids, "wandb": rows,
    }


def _assert_same(a: dict, b: dict) -> None:
    assert a["step"] == b["step"]
    for key in ("model", "masks"):
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    sa, sb = a["criterion"].get("scores", {}), b["criterion"].get("scores", {})
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[n], sb[n]) for n in sa)
    assert a["metrics"] == b["metrics"]  # bitwise: no duplicated or missing step
    assert a["scores"] == b["scores"]
    assert len(a["wandb_ids"]) == 1, a["wandb_ids"]  # every attempt logged into one W&B run
    steps = [r["_step"] for r in a["wandb"]]
    assert steps == sorted(set(steps)), "a W&B step missing or logged twice"
    assert a["wandb"] == b["wandb"]  # every row, value and histogram of the uninterrupted run


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """Uninterrupted runs, one per criterion (at the same time)."""
    from appkit import parallel

    base = tmp_path_factory.mktemp("ref")
    crits = ("snip_momentum", "magnitude")
    procs = parallel([([f"criterion={c}", f"hydra.run.dir={base / c}", *RUN], base, faulty("noise")) for c in crits], 2)
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return {c: _final_state(base / c) for c in crits}


CASES = {  # name: (criterion, fault kind, trainer.resume of the second attempt, default run directory)
    "sigkill-default-dir": ("snip_momentum", "kill", "true", True),
    "sigkill-mid-write": ("magnitude", "killwrite", "auto", False),
    "sigterm": ("snip_momentum", "term", "auto", False),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_stopped_then_resumed_is_bitwise_identical(tmp_path, reference_runs, case):
    criterion, kind, resume, default_dir = CASES[case]
    rng = random.Random(f"{SEED}-{case}")
    at = rng.randint(51, 140) if kind != "killwrite" else rng.choice([50, 100])  # killwrite: the checkpoint >= at
    print(f"PRUNELAB_TEST_SEED={SEED}: {kind} at step {at}")
    args = [f"criterion={criterion}", *RUN]
    explicit = tmp_path / "run"
    first = cli([*args, *([] if default_dir else [f"hydra.run.dir={explicit}"])], cwd=tmp_path,
                **faulty(f"noise,{kind}@{at}"))
    if default_dir:  # outputs/<group>/<time>_<random>_<name>: found by its name
        (run_dir,) = (tmp_path / "outputs" / "default").glob(f"*_{criterion}-s0.90-seed0")
    else:
        run_dir = explicit
    if kind == "term":  # SIGTERM: a checkpoint at the end of that step, a one-line message, exit 128 + 15
        assert first.returncode == 143, first.stderr[-2000:]
        last = first.stderr.strip().splitlines()[-1]
        # the whole command that resumes it: the command line's overrides, the run directory, resume
        assert last == f"prunelab: stopped by signal SIGTERM after step {at}; resume with {sys.executable} -m " \
            f"prunelab {' '.join(args)} hydra.run.dir={run_dir} trainer.resume=true", last  # this interpreter
        assert summary(run_dir)["status"] == "interrupted"
        assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == at
    else:
        assert first.returncode == -9, first.stderr[-2000:]
        assert summary(run_dir)["status"] == "running"  # what it said when it died (no live process holds it)
        last = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
        if kind == "killwrite":  # died writing the checkpoint of step 99 (or 149): the one before is intact
            assert last == (99 if at == 50 else 149) - 50
            assert (run_dir / "checkpoint.pt.tmp").exists()  # the half-written one never replaced it
        else:  # checkpoints by default at every evaluation: a kill costs at most one period (50 steps)
            assert at - 50 <= last + 1 <= at

    # a plain rerun refuses the directory (it holds an unfinished run); resume continues it
    again = cli([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path, **faulty("noise"))
    assert again.returncode == 2 and "trainer.resume=true" in again.stderr.strip().splitlines()[-1]
    resumed = cli([*args, f"hydra.run.dir={run_dir}", f"trainer.resume={resume}"], cwd=tmp_path, **faulty("noise"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # its upload command names every attempt's offline folder (the last alone holds only the steps since)
    parts = sorted(str(p) for p in (run_dir / "wandb").glob("offline-run-*"))
    assert len(parts) == 2 and f"upload it with: wandb sync {' '.join(parts)}" in resumed.stderr, resumed.stderr[-2000:]
    s = summary(run_dir)
    assert s["status"] == "finished" and s["attempt"] == 2
    assert "(not start-up or loading data); attempt 2, since its resume" in resumed.stdout  # the last attempt's
    _assert_same(_final_state(run_dir), reference_runs[criterion])

    # asked again (with the case's resume mode: true and auto across the cases), the finished run of this config
    # is returned as it is
    before = tree_digest(run_dir)
    again = cli([*args, f"hydra.run.dir={run_dir}", f"trainer.resume={resume}"], cwd=tmp_path, **faulty("noise"))
    assert again.returncode == 0 and "holds the finished run of this config" in again.stdout
    assert tree_digest(run_dir) == before


