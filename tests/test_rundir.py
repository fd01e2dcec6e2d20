"""The run-directory contract: unique default names, one process per directory, reuse only for the same config,
a restart that never appends to an earlier attempt, atomic writes. The rules on their own, then through the CLI."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appkit import cli, faulty, metrics, parallel, summary
from prunelab import rundir
from prunelab.errors import ConfigError

FP = "f" * 16


def _state(tmp_path: Path, **files: str | bytes) -> rundir.RunState:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    for name, content in files.items():
        path = run_dir / name.replace("__", ".")
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return rundir.inspect(run_dir)


def _summary(status: str, fingerprint: str = FP, world_size: int = 1) -> str:
    return json.dumps({"status": status, "fingerprint": fingerprint, "world_size": world_size})


def test_decide_reuses_only_what_this_config_computed(tmp_path):
    # nothing there, or only what a start left: a fresh run (resume=true needs something to continue)
    for files in ({}, {"summary__json": _summary("running")}, {"summary__json": _summary("failed"), "metrics__jsonl": ""}):
        state = _state(tmp_path, **files)
        assert not state.has_run
        assert rundir.decide(state, FP, False).kind == rundir.decide(state, FP, "auto").kind == "fresh"
        with pytest.raises(ConfigError, match="trainer.resume=true: a run directory holding a run to continue"):
            rundir.decide(state, FP, True)
        for f in state.path.iterdir():
            f.unlink()
    # a finished run of this config: returned for true and auto, refused without resume
    state = _state(tmp_path, summary__json=_summary("finished"))
    assert rundir.decide(state, FP, True).kind == rundir.decide(state, FP, "auto").kind == "finished"
    with pytest.raises(ConfigError, match=r"hydra.run.dir=.*: a directory without an earlier run \(it holds a "
                                          r"finished run\): trainer.resume=true"):
        rundir.decide(state, FP, False)
    # ... of another config: never handed out, whatever trainer.resume says; the message names both fingerprints
    for mode in (True, "auto"):
        with pytest.raises(ConfigError, match=f"of another config: fingerprint {FP}, this config's is {'e' * 16}"):
            rundir.decide(state, "e" * 16, mode)
    # killed with a checkpoint: resumed from it; killed before its first checkpoint: restarted from step 0
    state = _state(tmp_path, summary__json=_summary("running"), checkpoint__pt=b"x", metrics__jsonl='{"step": 1}\n')
    d = rundir.decide(state, FP, "auto")
    assert d.kind == "resume" and d.checkpoint == state.path / "checkpoint.pt"
    (state.path / "checkpoint.pt").unlink()
    assert rundir.decide(rundir.inspect(state.path), FP, "auto").kind == "restart"
    # a run of 2 data-parallel processes resumes only with 2
    state = _state(tmp_path, summary__json=_summary("interrupted", world_size=2), checkpoint__pt=b"x")
    with pytest.raises(ConfigError, match=r"a run of 1 process \(.* holds an interrupted run of 2 data-parallel"):
        rundir.decide(state, FP, True, world_size=1)
    assert rundir.decide(state, FP, True, world_size=2).kind == "resume"


def test_a_held_directory_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    lock = rundir.RunLock(run_dir)
    lock.acquire()
    try:
        # another process sees the holder (a second lock in this process would too: flock is per open file)
        probe = os.popen(f"{os.sys.executable} -c \"from prunelab import rundir; print(rundir.lock_holder('{run_dir}'))\"")
        assert probe.read().strip() == f"process {os.getpid()} on {os.uname().nodename}"
        with pytest.raises(ConfigError, match="a directory no other run is using"):
            rundir.decide(rundir.inspect(run_dir), FP, False)
    finally:
        lock.release()
    assert rundir.lock_holder(run_dir) is None  # released (the kernel also drops it when a process dies)


def test_the_lock_dies_with_the_run_not_with_its_forked_workers(tmp_path):
    """A run killed while its DataLoader workers (forked children) live on: the directory is free at once, so a
    requeued resume is not refused while the orphans wind down."""
    import contextlib
    import signal
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # each line in one write (a pipe keeps a write under PIPE_BUF whole; print's two writes can interleave)
    script = (f"import os, sys, time\nfrom prunelab import rundir\nrundir.RunLock({str(run_dir)!r}).acquire()\n"
              "child = os.fork()\nif child == 0:\n    os.write(1, b'ready\\n')\n    time.sleep(60)\n"
              "    os._exit(0)\nos.write(1, f'{child}\\n'.encode())\ntime.sleep(60)\n")
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    # the worker has run its after-fork hooks once it prints (on a loaded machine it may not have been scheduled
    # yet when the parent prints its pid: killing the parent then would race the worker's hook)
    lines = {run.stdout.readline().strip() for _ in range(2)}
    worker = int((lines - {"ready"}).pop())
    try:
        assert rundir.lock_holder(run_dir) == f"process {run.pid} on {os.uname().nodename}"
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
        os.kill(worker, 0)  # the orphaned worker is still alive
        assert rundir.lock_holder(run_dir) is None
        lock = rundir.RunLock(run_dir)
        lock.acquire()  # would raise "it is held by process ..." while the worker held a copy of the lock
        lock.release()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)


def test_fingerprint_leaves_out_execution_knobs_and_counts_processes():
    cfg = {"seed": 0, "group": "a", "trainer": {"max_steps": 10, "num_threads": 1, "device": "auto",
                                                "progress": "none", "checkpoint_every": None, "resume": False},
           "logger": {"backend": "none"}, "tracking": {"histogram_bins": 64}}
    base = rundir.config_fingerprint(cfg)
    knobs = json.loads(json.dumps(cfg))
    knobs["trainer"].update(num_threads=4, device="cpu", progress="bar", checkpoint_every=7, resume="auto")
    knobs.update(group="b", logger={"backend": "wandb"}, tracking={"histogram_bins": 8})
    assert rundir.config_fingerprint(knobs) == base
    # the data path and its loader: the same batches whatever they are, so a run resumes on another machine
    loader = {"workers": 0, "pin_memory": True, "persistent_workers": False, "prefetch_factor": 4}
    streamed = {**cfg, "trainer": {**cfg["trainer"], **loader}, "dataset": {"in_memory": False,
                                                                            "memory_budget_gb": 0.5}}
    assert rundir.config_fingerprint(streamed) == rundir.config_fingerprint({**cfg, "dataset": {}}) \
        != rundir.config_fingerprint({**cfg, "dataset": {"name": "cifar100"}})
    assert rundir.config_fingerprint({**cfg, "seed": 1}) != base
    assert rundir.config_fingerprint({**cfg, "trainer": {**cfg["trainer"], "max_steps": 11}}) != base
    assert rundir.config_fingerprint(cfg, world_size=2) != base


def test_a_directory_of_an_earlier_fingerprint_is_recognised_by_its_config(tmp_path):
    """Earlier versions counted the loader settings in the fingerprint they recorded: such a directory is the
    same config's when its config.yaml says so now (whatever its loader settings), and another config's stays
    refused."""
    import yaml

    cfg = {"seed": 0, "trainer": {"max_steps": 10, "workers": 2}, "dataset": {"name": "digits", "in_memory": "auto"}}
    old_fp = rundir.config_fingerprint(cfg, 1, rundir.LEGACY_EXECUTION_KEYS)
    state = _state(tmp_path, summary__json=_summary("finished", old_fp), config__yaml=yaml.safe_dump(cfg))
    assert old_fp != rundir.config_fingerprint(cfg)
    for other_loader in ({}, {"workers": 0}):
        asked = {**cfg, "trainer": {**cfg["trainer"], **other_loader}}
        assert rundir.decide(state, rundir.config_fingerprint(asked), "auto").kind == "finished"
    with pytest.raises(ConfigError, match=f"of another config: fingerprint {old_fp}"):
        rundir.decide(state, rundir.config_fingerprint({**cfg, "seed": 1}), "auto")
    # given the asking config, the refusal names what is set differently (not the loader: it may differ)
    asked = {**cfg, "seed": 1, "trainer": {"max_steps": 20, "workers": 0}, "optimizer": {"lr": 0.1}}
    with pytest.raises(ConfigError, match=r"of another config: optimizer.lr \(unset there, 0.1 here\), seed \(0 "
                                          r"there, 1 here\), trainer.max_steps \(10 there, 20 here\); fingerprint .*: "
                                          r"continue it with its own overrides, or choose another hydra.run.dir$"):
        rundir.decide(state, rundir.config_fingerprint(asked), "auto", config=asked)
    # a recorded fingerprint is not second-guessed by a config.yaml of another config
    state = _state(tmp_path, summary__json=_summary("finished"), config__yaml=yaml.safe_dump({**cfg, "seed": 2}))
    assert rundir.decide(state, FP, True).kind == "finished"
    with pytest.raises(ConfigError, match="of another config"):
        rundir.decide(state, rundir.config_fingerprint(cfg), True)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "summary.json"
    rundir.write_json_atomic(path, {"status": "finished"})
    with pytest.raises(RuntimeError):
        with rundir.atomic_write(path) as f:
            f.write('{"status": "runn')
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"status": "finished"} and not path.with_name("summary.json.tmp").exists()


# --- through the CLI ------------------------------------------------------------------------------------------
SHORT = ["logger=none", "trainer.progress=none", "trainer.max_steps=40"]


@pytest.mark.slow
def test_runs_started_together_never_share_a_directory(tmp_path):
    """Three identical commands with the default output directory, started at once, and two commands given the
    same hydra.run.dir at once: three directories of one run each; in the shared one, one run and one refusal."""
    shared = tmp_path / "shared"
    calls = [(SHORT, tmp_path, {})] * 3 + [([*SHORT, "trainer.max_steps=400", f"hydra.run.dir={shared}"],
                                            tmp_path, {})] * 2
    procs = parallel(calls, workers=5)
    assert all(p.returncode == 0 for p in procs[:3]), [p.stderr[-1000:] for p in procs[:3]]
    dirs = sorted((tmp_path / "outputs" / "default").iterdir())
    assert len(dirs) == 3  # the same second, the same config: still three names (time + 6 random hex digits)
    for d in dirs:
        assert summary(d)["status"] == "finished"
        assert [r["step"] for r in metrics(d)] == sorted({r["step"] for r in metrics(d)})  # one run's records
    codes = sorted(p.returncode for p in procs[3:])
    assert codes == [0, 2], [p.stderr[-1000:] for p in procs[3:]]
    refused = next(p for p in procs[3:] if p.returncode == 2)
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"prunelab: error: hydra.run.dir='{shared}'"), lines
    assert "no other run is using" in lines[0] or "it holds a finished run" in lines[0]
    steps = [r["step"] for r in metrics(shared)]
    assert len(steps) == len(set(steps)) and steps[-1] == 399 and summary(shared)["status"] == "finished"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["auto", "true"])
def test_a_restart_from_step_zero_never_appends_to_the_earlier_attempt(tmp_path, mode):
    """Killed before its first checkpoint (every 50 steps), the run restarts from step 0 with resume=auto, and with
    resume=true as the README says (it said so, then refused: the trainer looked for the checkpoint again); the
    earlier attempt's records move to .attempts/1/ and the new ones hold every step once."""
    run_dir = tmp_path / "run"
    args = [*SHORT, "trainer.max_steps=60", "trainer.eval_every=50", "trainer.log_every=5", f"hydra.run.dir={run_dir}"]
    killed = cli(args, cwd=tmp_path, **faulty("kill@33"))
    assert killed.returncode == -9 and not (run_dir / "checkpoint.pt").exists()
    old = (run_dir / "metrics.jsonl").read_bytes()
    before = [r["step"] for r in metrics(run_dir)]
    assert before and max(before) < 33
    again = cli([*args, f"trainer.resume={mode}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "restarting from step 0" in again.stdout
    assert (run_dir / ".attempts" / "1" / "metrics.jsonl").read_bytes() == old
    steps = [r["step"] for r in metrics(run_dir)]
    assert steps == sorted(set(steps)) and steps[: len(before)] == before and steps[-1] == 59
    s = summary(run_dir)
    assert s["status"] == "finished" and s["attempt"] == 2


@pytest.mark.slow
def test_a_killed_run_of_an_earlier_version_resumes(tmp_path):
    """A run killed under an earlier version (its summary and checkpoint carry the fingerprint of that time, which
    counted the loader settings): resumed with trainer.resume=true and other loader settings, it continues from
    its checkpoint and ends as the uninterrupted run; a resume with another lr is still refused."""
    import torch
    import yaml

    args = [*SHORT, "trainer.max_steps=60", "trainer.eval_every=20", "trainer.checkpoint_every=20"]
    cli([*args, f"hydra.run.dir={tmp_path / 'ref'}"], cwd=tmp_path)
    run_dir = tmp_path / "run"
    killed = cli([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path, **faulty("kill@45"))
    assert killed.returncode == -9
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    old = rundir.config_fingerprint(cfg, 1, rundir.LEGACY_EXECUTION_KEYS)
    assert old != rundir.config_fingerprint(cfg, 1)
    (run_dir / "summary.json").write_text(json.dumps({**summary(run_dir), "fingerprint": old}))
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    torch.save({**ck, "fingerprint": old}, run_dir / "checkpoint.pt")

    refused = cli([*args, "optimizer.lr=0.5", "trainer.resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert refused.returncode == 2 and "of another config: optimizer.lr (0.05 there, 0.5 here); fingerprint " \
        f"{old}" in refused.stderr
    resumed = cli([*args, "trainer.workers=0", "trainer.resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    s = summary(run_dir)
    assert s["status"] == "finished" and s["attempt"] == 2 and s["fingerprint"] == rundir.config_fingerprint(cfg, 1)
    assert metrics(run_dir) == metrics(tmp_path / "ref") and s["test/acc"] == summary(tmp_path / "ref")["test/acc"]


@pytest.mark.slow
def test_a_random_run_of_an_earlier_version_resumes_with_its_draw(tmp_path):
    """random gained criterion.stream (2026-12-08); a run killed under an earlier version has no such key and drew
    from the model initialisation's stream. It resumes with criterion.stream=model_init (the same computation: a
    config with the value has the fingerprint of one without the key) and ends as the uninterrupted run; with the
    new default it is another config, refused naming the key. The report reads it as stream=model_init."""
    import torch
    import yaml

    from prunelab.report.data import load_run

    args = [*SHORT, "criterion=random", "trainer.max_steps=60", "trainer.eval_every=20", "trainer.checkpoint_every=20"]
    cli([*args, "criterion.stream=model_init", f"hydra.run.dir={tmp_path / 'ref'}"], cwd=tmp_path)
    run_dir = tmp_path / "run"
    killed = cli([*args, "criterion.stream=model_init", f"hydra.run.dir={run_dir}"], cwd=tmp_path, **faulty("kill@45"))
    assert killed.returncode == -9
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    del cfg["criterion"]["stream"]  # as the earlier version wrote it, with the fingerprint it recorded
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    old = rundir.config_fingerprint(cfg, 1)
    assert old == rundir.config_fingerprint({**cfg, "criterion": {**cfg["criterion"], "stream": "model_init"}}, 1)
    assert old != rundir.config_fingerprint({**cfg, "criterion": {**cfg["criterion"], "stream": "independent"}}, 1)
    (run_dir / "summary.json").write_text(json.dumps({**summary(run_dir), "fingerprint": old}))
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    torch.save({**ck, "fingerprint": old}, run_dir / "checkpoint.pt")
    assert load_run(run_dir).config["criterion.stream"] == "model_init"  # what its config without the key drew

    refused = cli([*args, "trainer.resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert refused.returncode == 2 and 'criterion.stream (unset there, "independent" here)' in refused.stderr
    resumed = cli([*args, "criterion.stream=model_init", "trainer.resume=true", f"hydra.run.dir={run_dir}"],
                  cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert metrics(run_dir) == metrics(tmp_path / "ref") and summary(run_dir)["attempt"] == 2
