"""Reliability: a finished or foreign run directory is refused and left alone, a checkpoint of another config or a
corrupted one is refused, and a NaN loss stops cleanly with a readable last checkpoint. (A kill or a stop at an
arbitrary step, and the resume: tests/test_kill_resume.py.)
"""
from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from appkit import cli, summary, tree_digest


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("finished")
    run_dir = base / "run"
    proc = cli(["logger=none", "trainer.progress=none", "trainer.max_steps=30", "schedule.start_step=5",
                "schedule.end_step=20", "schedule.pruning_frequency=5", "trainer.checkpoint_every=10",
                f"hydra.run.dir={run_dir}"], cwd=base)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def _check_one_line_error(proc: subprocess.CompletedProcess, key: str, value: str, allowed: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("prunelab: error: "), lines[0]
    assert key in lines[0] and value in lines[0] and allowed in lines[0], lines[0]


def test_finished_run_directory_is_refused_and_left_alone(tmp_path, finished_run):
    before = tree_digest(finished_run, skip=())  # the lock too: a refused command takes none
    proc = cli(["logger=none", f"hydra.run.dir={finished_run}"], cwd=tmp_path)
    _check_one_line_error(proc, "hydra.run.dir", str(finished_run), "trainer.resume=true")
    # a finished run of another config is never handed out: resume=true and auto are refused, naming both
    for mode in ("true", "auto"):
        proc = cli(["logger=none", "trainer.progress=none", "trainer.max_steps=30", "schedule.start_step=5",
                    "schedule.end_step=20", "schedule.pruning_frequency=5", "seed=1", f"trainer.resume={mode}",
                    f"hydra.run.dir={finished_run}"], cwd=tmp_path)
        _check_one_line_error(proc, "trainer.resume", mode if mode == "auto" else "true", "of another config")
    assert tree_digest(finished_run, skip=()) == before
    assert list(tmp_path.iterdir()) == []  # nothing written where the refused runs started


def test_checkpoint_of_another_config_or_corrupted_is_refused(tmp_path, finished_run):
    other = tmp_path / "other"
    shutil.copytree(finished_run, other)
    (other / "summary.json").unlink()  # an unfinished run with a checkpoint, from before fingerprints in summaries
    before = tree_digest(other, skip=())
    proc = cli(["logger=none", "trainer.max_steps=30", "schedule.start_step=5", "schedule.end_step=20",
                "schedule.pruning_frequency=5", "criterion=snip", "trainer.resume=true", f"hydra.run.dir={other}"],
               cwd=tmp_path)
    _check_one_line_error(proc, "trainer.resume", "true", "another config")
    assert tree_digest(other, skip=()) == before

    (other / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    before = tree_digest(other)
    proc = cli(["logger=none", "trainer.max_steps=30", "schedule.start_step=5", "schedule.end_step=20",
                "schedule.pruning_frequency=5", "trainer.checkpoint_every=10", "trainer.resume=true",
                f"hydra.run.dir={other}"], cwd=tmp_path)
    _check_one_line_error(proc, "trainer.resume", "checkpoint.pt", "corrupted")
    assert tree_digest(other) == before


NAN_DRIVER = """
import sys
import torch
import torch.nn.functional as F
at = int(sys.argv[1])
real = F.cross_entropy
calls = {"n": 0}
def cross_entropy(inp, target, *args, **kwargs):
    out = real(inp, target, *args, **kwargs)
    if inp.requires_grad:
        calls["n"] += 1
        if calls["n"] > at:
            out = out * float("nan")
    return out
F.cross_entropy = cross_entropy
from prunelab.__main__ import cli
sys.argv = ["prunelab", *sys.argv[2:]]
cli()
"""


def test_nan_loss_stops_with_a_message_and_a_readable_checkpoint(tmp_path):
    import sys

    from appkit import env

    driver = tmp_path / "nan.py"
    driver.write_text(NAN_DRIVER)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(driver), "57", "logger=none", "trainer.progress=none", "trainer.max_steps=100",
         "schedule.start_step=10", "schedule.end_step=50", "schedule.pruning_frequency=10",
         "trainer.checkpoint_every=20", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "train/loss" in lines[0] and "nan" in lines[0] and "checkpoint" in lines[0], lines
    s = summary(run_dir)
    assert s["status"] == "failed" and "NonFiniteLoss" in s["error"]
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 39  # the last checkpoint before the NaN (steps 19, 39; the NaN starts at step 57)
    assert all(torch.isfinite(t).all() for t in ck["model"].values())


def test_a_run_outlives_the_reader_of_its_output(tmp_path):
    """`prunelab ... | head -1`: the reader goes after the first line, the run writes on (progress, the summary) and
    must finish as if nobody had read it, not die of a BrokenPipeError (before: exit 1, summary left 'running')."""
    import sys

    from appkit import env

    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "prunelab", "logger=none", "trainer.max_steps=300",
                             "trainer.eval_every=50", "trainer.log_every=10", f"hydra.run.dir={run_dir}"],
                            cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("[prunelab] ")
    proc.stdout.close()
    proc.stderr.close()
    assert proc.wait(timeout=300) == 0
    s = summary(run_dir)
    assert s["status"] == "finished" and s["steps"] == 300
