"""Reliability: a run killed with SIGKILL (mid-run or mid-checkpoint-write) resumes bitwise-identically, bad
input stops before any work with one line, a NaN loss stops cleanly with a readable last checkpoint."""
from __future__ import annotations

import hashlib
import random
import shutil
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from appkit import cli, env, summary

import subprocess

# 300 deterministic steps, pruning every 20 from 40 to 200, a checkpoint every 25 steps
RUN = [
    "logger=none", "trainer.progress=none", "trainer.deterministic=true", "trainer.max_steps=300",
    "schedule.start_step=40", "schedule.end_step=200", "schedule.pruning_frequency=20", "trainer.eval_every=50",
    "trainer.checkpoint_every=25", "trainer.log_every=5",
]

# A driver that runs the real CLI but SIGKILLs itself at a chosen step, or halfway through writing a checkpoint.
DRIVER = textwrap.dedent("""
    import io, os, signal, sys
    import torch
    from prunelab import pruner
    mode, at = sys.argv[1], int(sys.argv[2])
    if mode == "step":
        begin = pruner.Pruner.on_step_begin
        def on_step_begin(self, step=None):
            if step == at:
                os.kill(os.getpid(), signal.SIGKILL)
            return begin(self, step)
        pruner.Pruner.on_step_begin = on_step_begin
    else:
        save = torch.save
        def dying_save(obj, f, *args, **kwargs):
            if isinstance(obj, dict) and obj.get("step", -1) >= at and hasattr(f, "write"):
                buf = io.BytesIO()
                save(obj, buf)
                f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                f.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return save(obj, f, *args, **kwargs)
        torch.save = dying_save
    from prunelab.__main__ import cli
    sys.argv = ["prunelab", *sys.argv[3:]]
    cli()
""")


def _final_state(run_dir: Path) -> dict:
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    return {
        "model": ck["model"], "masks": torch.load(run_dir / "masks.pt", weights_only=True),
        "criterion": ck["pruner"]["criterion"], "step": ck["step"],
        "metrics": (run_dir / "metrics.jsonl").read_bytes(), "scores": (run_dir / "scores.jsonl").read_bytes(),
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


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory):
    """Uninterrupted runs, one per criterion."""
    out = {}
    base = tmp_path_factory.mktemp("ref")
    for crit in ("snip_momentum", "magnitude"):
        run_dir = base / crit
        proc = cli([f"criterion={crit}", f"hydra.run.dir={run_dir}", *RUN], cwd=base)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[crit] = _final_state(run_dir)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("criterion", ["snip_momentum", "magnitude"])
@pytest.mark.parametrize("mode", ["step", "write"])
def test_sigkill_then_resume_is_bitwise_identical(tmp_path, reference_runs, criterion, mode):
    rng = random.Random()
    at = rng.randint(26, 280) if mode == "step" else rng.choice([49, 74, 99, 124, 149, 174, 199, 224])
    print(f"killing at step {at} ({mode})")
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    run_dir = tmp_path / "run"
    args = [f"criterion={criterion}", f"hydra.run.dir={run_dir}", *RUN]
    killed = subprocess.run([sys.executable, str(driver), mode, str(at), *args], cwd=tmp_path, env=env(),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (run_dir / "summary.json").exists()
    last = torch.load(run_dir / "checkpoint.pt", weights_only=True)  # the previous checkpoint is intact
    assert last["step"] < at
    if mode == "write":
        assert (run_dir / "checkpoint.pt.tmp").exists()  # the half-written one never replaced it

    # a plain rerun refuses the directory (it holds an unfinished run); resume continues it
    again = cli(args, cwd=tmp_path)
    assert again.returncode == 2 and "trainer.resume=true" in again.stderr.strip().splitlines()[-1]
    resumed = cli([*args, "trainer.resume=true"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert summary(run_dir)["status"] == "finished"
    _assert_same(_final_state(run_dir), reference_runs[criterion])


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# (overrides, key, value, what is allowed) — the last line of stderr must name all three
BAD_INPUTS = [
    (["criterion=nope"], "criterion", "nope", "snip_momentum"),
    (["pattern=nope"], "pattern", "nope", "unstructured"),
    (["model=nope"], "model", "nope", "resnet20"),
    (["dataset=nope"], "dataset", "nope", "digits"),
    (["optimizer=nope"], "optimizer", "nope", "adamw"),
    (["criterion.criterion_type=nope"], "criterion.criterion_type", "nope", "snip_momentum"),
    (["schedule.target_sparsity=1.0"], "schedule.target_sparsity", "1.0", "[0, 1)"),
    (["schedule.target_sparsity=-0.1"], "schedule.target_sparsity", "-0.1", "[0, 1)"),
    (["schedule.start_step=700"], "schedule.start_step", "700", "<= schedule.end_step"),
    (["schedule.end_step=5000"], "schedule.end_step", "5000", "trainer.max_steps"),
    (["trainer.max_steps=null", "trainer.epochs=2"], "schedule.end_step", "600", "training length"),
    (["schedule.pruning_frequency=0"], "schedule.pruning_frequency", "0", ">= 1"),
    (["criterion=snip", "schedule.start_step=0", "schedule.end_step=0"], "schedule.end_step", "0", "end_step >= 1"),
    (["pattern.type=3x"], "pattern.type", "3x", "NxM"),
    (["pattern.type=4:2"], "pattern.type", "4:2", "0 < N < M"),
    (["pattern.type=0x1"], "pattern.type", "0x1", "NxM"),
    (["pattern.type=a:b"], "pattern.type", "a:b", "N:M"),
    (["pattern.min_sparsity_ratio_per_op=0.5", "pattern.max_sparsity_ratio_per_op=0.4"],
     "pattern.min_sparsity_ratio_per_op", "0.5", "<= pattern.max_sparsity_ratio_per_op"),
    (["schedule.target_sparsity=0.99"], "schedule.target_sparsity", "0.99", "<= 0.98"),
    (["pattern=2in4", "schedule.target_sparsity=0.7"], "schedule.target_sparsity", "0.7", "<= 0.5"),
    (["prune.include=[nomatch*]"], "prune.include", "nomatch*", "glob matching"),
    (["prune.exclude=[zzz]"], "prune.exclude", "zzz", "glob matching"),
    (["optimizer.lr=0"], "optimizer.lr", "0", "> 0"),
    (["optimizer.lr=-0.1"], "optimizer.lr", "-0.1", "> 0"),
    (["trainer.batch_size=0"], "trainer.batch_size", "0", ">= 1"),
    (["trainer.max_steps=-5"], "trainer.max_steps", "-5", ">= 1"),
    (["trainer.max_steps=null", "trainer.epochs=0"], "trainer.epochs", "0", ">= 1"),
    (["dataset=mnist", "model=lenet5", "dataset.root={empty}"], "dataset.root", "{empty}", "dataset.download=true"),
]


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
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("prunelab: error: "), last
    assert key in last and value in last and allowed in last, last


def test_bad_inputs_fail_with_one_line_and_touch_nothing(tmp_path, finished_run):
    before = _tree_digest(finished_run)
    empty = tmp_path / "no-data"
    empty.mkdir()
    cases = [([a.replace("{empty}", str(empty)) for a in args], key, value.replace("{empty}", str(empty)), allowed)
             for args, key, value, allowed in BAD_INPUTS]

    def attempt(i_case):
        i, (args, key, value, allowed) = i_case
        run_dir = tmp_path / f"case{i}"
        return cli([*args, "logger=none", f"hydra.run.dir={run_dir}"], cwd=tmp_path), run_dir

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(attempt, enumerate(cases)))
    for (proc, run_dir), (args, key, value, allowed) in zip(results, cases):
        _check_one_line_error(proc, key, value, allowed)
        # nothing ran: no run files were written
        assert not any((run_dir / f).exists() for f in ("metrics.jsonl", "checkpoint.pt", "summary.json")), args
    assert _tree_digest(finished_run) == before


def test_finished_run_directory_is_refused_and_left_alone(tmp_path, finished_run):
    before = _tree_digest(finished_run)
    proc = cli(["logger=none", f"hydra.run.dir={finished_run}"], cwd=tmp_path)
    _check_one_line_error(proc, "hydra.run.dir", str(finished_run), "trainer.resume=true")
    assert _tree_digest(finished_run) == before


def test_checkpoint_of_another_config_or_corrupted_is_refused(tmp_path, finished_run):
    other = tmp_path / "other"
    shutil.copytree(finished_run, other)
    (other / "summary.json").unlink()  # an unfinished run with a checkpoint
    before = _tree_digest(other)
    proc = cli(["logger=none", "trainer.max_steps=30", "schedule.start_step=5", "schedule.end_step=20",
                "schedule.pruning_frequency=5", "criterion=snip", "trainer.resume=true", f"hydra.run.dir={other}"],
               cwd=tmp_path)
    _check_one_line_error(proc, "trainer.resume", "checkpoint.pt", "another config")
    assert _tree_digest(other) == before

    (other / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    before = _tree_digest(other)
    proc = cli(["logger=none", "trainer.max_steps=30", "schedule.start_step=5", "schedule.end_step=20",
                "schedule.pruning_frequency=5", "trainer.resume=true", f"hydra.run.dir={other}"], cwd=tmp_path)
    _check_one_line_error(proc, "trainer.resume", "checkpoint.pt", "corrupted")
    assert _tree_digest(other) == before


NAN_DRIVER = textwrap.dedent("""
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
""")


def test_nan_loss_stops_with_a_message_and_a_readable_checkpoint(tmp_path):
    driver = tmp_path / "nan.py"
    driver.write_text(NAN_DRIVER)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(driver), "57", "logger=none", "trainer.progress=none", "trainer.max_steps=100",
         "schedule.start_step=10", "schedule.end_step=50", "schedule.pruning_frequency=10",
         "trainer.checkpoint_every=20", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "train/loss" in last and "nan" in last and "checkpoint" in last, last
    assert "Traceback" not in proc.stderr
    s = summary(run_dir)
    assert s["status"] == "failed" and "NonFiniteLoss" in s["error"]
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 39  # the last checkpoint before the NaN (steps 19, 39; the NaN starts at step 57)
    assert all(torch.isfinite(t).all() for t in ck["model"].values())
