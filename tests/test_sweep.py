"""Sweeps: a failing job, or one the OS kills, never costs the others; a re-run sweep (in any order, with
trainer.resume=auto) reuses its finished jobs and resumes the others; another sweep into the same directory is
refused; the dense baseline runs once per seed (prunelab's sweeper, and Hydra really uses it); the cluster
launcher and the experiment presets compose; a tiny criteria_fmnist runs."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from appkit import FAST, cli, faulty, metrics, tree_digest
from realdata import FMNIST_FAST, require_fashion_mnist


def _jobs(sweep: Path) -> dict[str, dict]:
    return {p.name: json.loads((p / "summary.json").read_text()) for p in sweep.iterdir()
            if p.is_dir() and not p.name.startswith(".")}


def test_multirun_flag_after_the_overrides(tmp_path):
    """``-m`` after an override is taken as before them (Hydra's parser printed its usage and exit 2)."""
    sweep = tmp_path / "sweep"
    proc = cli([*FAST, "logger=none", "-m", "seed=0,1", f"hydra.sweep.dir={sweep}"],
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 of 2 jobs finished" in proc.stderr and len(_jobs(sweep)) == 2
    again = cli([*FAST, "logger=none", "-m", "seed=0,1", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"prunelab: error: hydra.sweep.dir='{sweep}': a new directory, or this one with trainer.resume=auto to "
        "continue the sweep there (2 of its 2 jobs ran there before: finished jobs are reused, unfinished ones "
        "resumed)"], again.stderr


@pytest.mark.slow
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    # job 1 diverges (lr 1e6: the loss becomes NaN, the job raises NonFiniteLoss); jobs 0 and 2 are fine
    # without OMP_NUM_THREADS the 2 jobs at once share the CPUs' threads (a job that says uses its own)
    proc = cli(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=none", *FAST,
                "optimizer.lr=0.05,1e6,0.01", f"hydra.sweep.dir={sweep}"], cwd=tmp_path, timeout=600,
               OMP_NUM_THREADS="")
    assert proc.returncode == 1
    cpus = len(os.sched_getaffinity(0))
    assert f"2 job(s) at once on {cpus} CPU(s), {max(1, cpus // 2)} torch thread(s) each (trainer.num_threads or " \
        "OMP_NUM_THREADS choose instead)" in proc.stdout
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("prunelab: error: sweep=") and "1 failed job(s)" in last, last
    jobs = _jobs(sweep)
    assert len(jobs) == 3
    (failed,) = [name for name, s in jobs.items() if s["status"] != "finished"]
    assert failed in last and "NonFiniteLoss" in jobs[failed]["error"]
    assert all(s["status"] == "finished" and s["test/acc"] > 0.5 for n, s in jobs.items() if n != failed)
    assert all(s["num_threads"] == max(1, cpus // 2) for n, s in jobs.items() if n != failed)


def test_a_signal_to_a_job_stops_the_sweep_and_says_how_to_continue_it(tmp_path):
    """SIGTERM (a scheduler's notice) or Ctrl-C in a job stops the sweep, not only the job: its checkpoint written,
    no later job started, exit 128 + the signal, and the command that continues the sweep."""
    sweep = tmp_path / "sweep"
    args = ["-m", "logger=none", *FAST, "criterion=magnitude,snip,random", f"hydra.sweep.dir={sweep}"]
    proc = cli(args, cwd=tmp_path, **faulty("term@30"))
    assert proc.returncode == 143, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    (job,) = _jobs(sweep)  # the first job only
    assert _jobs(sweep)[job]["status"] == "interrupted" and job.startswith("magnitude-")
    assert last == (f"prunelab: sweep stopped by signal SIGTERM in job(s) {job} (its checkpoint written); 2 job(s) "
                    f"not started; continue with {sys.executable} -m prunelab {' '.join(args[:-1])} "
                    f"hydra.sweep.dir={sweep} trainer.resume=auto"), last
    rerun = cli([*args, "trainer.resume=auto"], cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {s["status"] for s in _jobs(sweep).values()} == {"finished"} and len(_jobs(sweep)) == 3
    assert _jobs(sweep)[job]["attempt"] == 2


@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=1"]],
                         ids=["basic", "joblib"])
def test_a_signal_in_a_jobs_start_up_stops_the_sweep_too(tmp_path, launcher):
    """SIGTERM while the first job builds its data (before training: no checkpoint): the sweep stops all the same,
    naming the job as stopped in its start-up (not lost), with the command that continues it; the job left no
    status. Under joblib the job's own process takes the signal."""
    sweep = tmp_path / "sweep"
    args = ["-m", *launcher, "logger=none", *FAST, "criterion=magnitude,snip", f"hydra.sweep.dir={sweep}"]
    proc = cli(args, cwd=tmp_path, **faulty("sigterm@build"))
    assert proc.returncode == 143, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("prunelab: sweep stopped by signal SIGTERM in job(s) magnitude-") and \
        "(in its start-up); 1 job(s) not started; continue with " in last, last
    assert not any((d / "summary.json").exists() for d in sweep.iterdir() if d.is_dir())


@pytest.mark.slow
def test_a_signal_to_a_parallel_sweep_reaches_its_running_jobs_and_starts_no_other(tmp_path):
    """hydra/launcher=joblib: SIGTERM to the sweep's process (as a scheduler sends it) is passed on to the jobs
    running in their own processes, which checkpoint and stop; the jobs not started stay so."""
    import signal
    import subprocess

    from appkit import env

    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(
        [sys.executable, "-m", "prunelab", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=none",
         "trainer.max_steps=3000", "trainer.num_threads=1", "trainer.progress=lines",
         "criterion=magnitude,snip,random,gradient", f"hydra.sweep.dir={sweep}"],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, sent = [], False
    for line in proc.stdout:  # both jobs have trained a while: one SIGTERM
        out.append(line)
        if not sent and sum("[prunelab] step " in x for x in out) == 2:
            proc.send_signal(signal.SIGTERM)
            sent = True
    assert proc.wait(timeout=300) == 143, "".join(out[-20:])
    jobs = _jobs(sweep)
    assert len(jobs) == 2 and {s["status"] for s in jobs.values()} == {"interrupted"}, jobs
    assert out[-1].startswith("prunelab: sweep stopped by signal SIGTERM in job(s) ") and \
        "; 2 job(s) not started; continue with " in out[-1], out[-1]
    assert all(f"{name} (its checkpoint written)" in out[-1] for name in jobs), out[-1]  # both stopped jobs named


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
    assert len(jobs) == 3 and last.startswith(f"prunelab: error: sweep={sweep}: 1 failed job(s): snip-s0.90-seed0_")
    killed = next(n for n in jobs if n.startswith("snip"))
    assert jobs[killed]["status"] == "failed" and "SIGKILL" in jobs[killed]["error"]
    assert all(s["status"] == "finished" for n, s in jobs.items() if n != killed)
    finished = {n: tree_digest(sweep / n) for n in jobs if n != killed}
    command = (sweep / "multirun.yaml").read_bytes()  # the whole sweep's command, as Hydra wrote it

    # the same sweep again without resume=auto is refused (nothing of it changes)
    before = tree_digest(sweep)
    again = cli([*base, "criterion=random,snip,magnitude"], cwd=tmp_path)
    assert again.returncode == 2 and "trainer.resume=auto" in again.stderr.strip().splitlines()[-1]
    # another sweep into this directory is refused too, with resume=auto or not
    other = cli([*base, "criterion=magnitude,gradient", "trainer.resume=auto"], cwd=tmp_path)
    lines = other.stderr.strip().splitlines()
    assert other.returncode == 2 and len(lines) == 1 and "a directory without another sweep" in lines[0], lines
    assert tree_digest(sweep) == before

    # a re-run that cannot resume the killed job (its checkpoint corrupted): the list at the end says why, not the
    # status its directory still shows from the killed attempt
    checkpoint = sweep / killed / "checkpoint.pt"
    saved = checkpoint.read_bytes()
    checkpoint.write_bytes(saved[:1000])
    broken = cli([*base, "criterion=random,snip,magnitude", "trainer.resume=auto"], cwd=tmp_path, timeout=600)
    assert broken.returncode == 1, broken.stderr[-3000:]
    (line,) = [ln for ln in broken.stderr.splitlines() if f"failed job {killed} (" in ln]  # and its overrides:
    given = line.split(f"failed job {killed} (")[1].split("): failed: ")[0].split()  # two folders may read alike
    assert "criterion=snip" in given and "trainer.resume=auto" in given, line
    assert line.endswith(f"): failed: ConfigError: trainer.resume='{checkpoint}': a readable prunelab checkpoint "
                         "(this file is corrupted: RuntimeError)"), line
    assert broken.stderr.strip().splitlines()[-1].endswith("once what their lines above say is mended")
    checkpoint.write_bytes(saved)
    # the re-run's multirun.yaml replaced the first one, which is kept
    assert (sweep / "multirun.1.yaml").read_bytes() == command != (sweep / "multirun.yaml").read_bytes()

    # re-run in another order with resume=auto: the finished jobs are returned as they are (the same config, found
    # by its directory's fingerprint), the killed one resumes from its checkpoint
    rerun = cli([*base, "criterion=random,snip,magnitude", "trainer.resume=auto"], cwd=tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "3 of 3 jobs finished" in rerun.stderr
    jobs = _jobs(sweep)
    assert all(s["status"] == "finished" for s in jobs.values()) and len(jobs) == 3
    assert all(tree_digest(sweep / n) == d for n, d in finished.items())
    assert jobs[killed]["attempt"] == 2 and jobs[killed]["criterion"] == "snip"
    steps = [r["step"] for r in metrics(sweep / killed)]
    assert steps == sorted(set(steps)) and steps[-1] == 59


@pytest.mark.slow
def test_a_sweep_of_an_earlier_version_continues_in_its_directories(tmp_path):
    """A sweep made before the loader settings left the fingerprint (its job directories and sweep.json carry the
    fingerprints of that time), re-run with trainer.resume=auto and other loader settings: every job returns its
    finished run from its old directory (nothing retrained, nothing new), and the sweep is refused as before
    without resume=auto."""
    import yaml

    from prunelab import rundir

    sweep = tmp_path / "sweep"
    base = ["-m", "logger=none", *FAST, "trainer.max_steps=30", "schedule.end_step=20", "criterion=magnitude,random",
            f"hydra.sweep.dir={sweep}"]
    first = cli(base, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    # what the earlier version left: directories named by, and summaries and sweep.json holding, the old fingerprint
    manifest = {}
    for job in [p for p in sweep.iterdir() if p.is_dir()]:
        cfg = yaml.safe_load((job / "config.yaml").read_text())
        old = rundir.config_fingerprint(cfg, 1, rundir.LEGACY_EXECUTION_KEYS)
        assert old != rundir.config_fingerprint(cfg, 1)
        s = json.loads((job / "summary.json").read_text())
        (job / "summary.json").write_text(json.dumps({**s, "fingerprint": old}))
        renamed = job.rename(sweep / f"{job.name.rsplit('_', 1)[0]}_{old[:8]}")
        manifest[renamed.name] = old
    (sweep / "sweep.json").write_text(json.dumps({"jobs": manifest}))
    before = tree_digest(sweep)

    again = cli([*base, "trainer.workers=0"], cwd=tmp_path)
    assert again.returncode == 2 and "trainer.resume=auto" in again.stderr.strip().splitlines()[-1], again.stderr
    assert tree_digest(sweep) == before
    rerun = cli([*base, "trainer.workers=0", "trainer.resume=auto"], cwd=tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "2 of 2 jobs finished" in rerun.stderr
    assert rerun.stdout.count("holds the finished run of this config") == 2, rerun.stdout[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == sorted(manifest)
    for name in manifest:  # returned as they are
        assert tree_digest(sweep / name) == {k.split("/", 1)[1]: v for k, v in before.items() if k.startswith(name)}


def test_a_job_finds_the_directory_an_earlier_version_recorded_for_it(tmp_path):
    """The manifest of an earlier version's sweep records a job's directory under the fingerprint of that time:
    the job takes it when the old fingerprint is its own, or when the directory's config.yaml is its config (the
    loader settings changed since); another config, or another run name, never."""
    import yaml
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from prunelab import rundir
    from prunelab.checks import fingerprint_of
    from prunelab.config import task_config
    from prunelab.sweep import Job, recorded_job

    def job(*overrides: str) -> Job:
        with initialize_config_module("prunelab.conf", version_base=None):
            cfg = hydra_compose("config", overrides=["criterion=snip", *overrides], return_hydra_config=True)
        return Job(0, list(overrides), cfg, str(OmegaConf.select(cfg, "hydra.sweep.subdir")), fingerprint_of(cfg, 1))

    then = job("trainer.workers=2")
    legacy = rundir.config_fingerprint(task_config(then.config), 1, rundir.LEGACY_EXECUTION_KEYS)
    old_dir = f"{then.subdir.rsplit('_', 1)[0]}_{legacy[:8]}"
    assert old_dir != then.subdir
    recorded = {old_dir: legacy}
    for overrides in (["trainer.workers=2"], ["trainer.workers=0", "dataset.in_memory=false"]):
        if overrides == ["trainer.workers=0", "dataset.in_memory=false"]:  # the job ran in the old directory
            (tmp_path / old_dir).mkdir()
            (tmp_path / old_dir / "summary.json").write_text(json.dumps({"status": "finished", "fingerprint": legacy}))
            (tmp_path / old_dir / "config.yaml").write_text(yaml.safe_dump(task_config(then.config)))
        now = job(*overrides)
        assert recorded_job(now, recorded, tmp_path), overrides
        assert now.subdir == now.config.hydra.sweep.subdir == old_dir
        assert now.extra_overrides == [f"hydra.sweep.subdir='{old_dir}'"]
    other = job("trainer.workers=2", "seed=1")
    assert not recorded_job(other, recorded, tmp_path) and other.subdir != old_dir
    # the same config under another run name (an old directory renamed by hand) is not taken
    renamed = {f"snip-s0.90-seed9_{legacy[:8]}": legacy}
    assert not recorded_job(job("trainer.workers=2"), renamed, tmp_path)


def test_a_labelled_preset_keeps_its_fingerprint_and_its_directory_from_before_the_label(tmp_path):
    """criterion=static_erk's runs were named random-... before the preset labelled its method: the label names,
    it does not compute (the fingerprint is the one of the config without it, now and as an earlier version
    recorded it), and a sweep re-run takes the job's directory of that name; a directory of another name, never."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from prunelab import rundir
    from prunelab.checks import fingerprint_of
    from prunelab.config import task_config
    from prunelab.sweep import Job, recorded_job

    def job(*overrides: str) -> Job:
        with initialize_config_module("prunelab.conf", version_base=None):
            cfg = hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
        return Job(0, list(overrides), cfg, str(OmegaConf.select(cfg, "hydra.sweep.subdir")), fingerprint_of(cfg, 1))

    static = job("criterion=static_erk")
    assert static.subdir.startswith("static_erk-s0.90-seed0_")
    assert static.fingerprint == job("criterion=static_erk", "criterion.label=other").fingerprint
    unlabelled = task_config(static.config)
    del unlabelled["criterion"]["label"]
    assert rundir.config_fingerprint(task_config(static.config), 1, rundir.LEGACY_EXECUTION_KEYS) == \
        rundir.config_fingerprint(unlabelled, 1, rundir.LEGACY_EXECUTION_KEYS)
    before = f"random-s0.90-seed0_{static.fingerprint[:8]}"
    assert not recorded_job(job("criterion=static_erk"), {f"magnitude-s0.90-seed0_{static.fingerprint[:8]}":
                                                         static.fingerprint}, tmp_path)
    assert recorded_job(static, {before: static.fingerprint}, tmp_path) and static.subdir == before


def test_jobs_that_compute_the_same_run_are_refused_naming_what_differs(tmp_path):
    """Jobs that differ only in keys that do not change results (the loader's workers) are one run: the sweep is
    refused before anything is written, with the keys and both jobs' overrides."""
    proc = cli(["-m", "trainer.workers=0,1", "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert lines[0] == "prunelab: error: sweep='jobs #0 and #1': jobs that each compute a run of their own (these " \
        "two compute the same run: they differ only " \
        "in trainer.workers (0 in #0, 1 in #1), which do not change a run's results: trainer.workers=0 logger=none | " \
        "trainer.workers=1 logger=none)"
    assert not (tmp_path / "sweep").exists()
    proc = cli(["-m", "trainer.deterministic=false,true", "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
               cwd=tmp_path)  # booleans echoed as typed, not as Hydra's sweeper renders them (False, True)
    assert proc.returncode == 2 and proc.stderr.strip().endswith(
        ": trainer.deterministic=false logger=none | trainer.deterministic=true logger=none)"), proc.stderr[-2000:]


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


# ------------------------------------------------------------------------------------ the dense baseline once


def test_dense_jobs_run_once_per_seed_whatever_the_criteria():
    """3 criteria x {0, 0.5} x 2 seeds: Hydra's product is 12 jobs, of which the 6 dense ones are 2 distinct runs
    (one per seed); the composed config decides what is dense (here `0` and a criterion option)."""
    from prunelab.sweeper import canonical_jobs

    jobs = [[f"criterion={c}", f"schedule.target_sparsity={t}", f"seed={s}", "criterion.alpha=0.5"]
            for c in ("snip", "gradient", "random") for t in ("0", "0.5") for s in (0, 1)]
    composed = []
    with initialize_config_module("prunelab.conf", version_base=None):
        kept, n_dense = canonical_jobs(jobs, lambda o: composed.append(o) or compose("config", overrides=o[:3]))
    assert len(composed) == 12 + 6 and n_dense == 2  # each dense job once more: checked without its schedule
    dense = [j for j in kept if "schedule.target_sparsity=0" in j]
    assert dense == [["schedule.target_sparsity=0", f"seed={s}", "criterion=magnitude"] for s in (0, 1)]
    pruned = [j for j in kept if j not in dense]
    assert pruned == [j for j in jobs if "schedule.target_sparsity=0.5" in j]  # untouched, in Hydra's order
    assert kept.index(dense[0]) == 0 and kept.index(dense[1]) == 1  # where their first occurrences were


def test_a_target_set_by_a_group_option_counts_too():
    from prunelab.sweeper import canonical_jobs, dense_job

    jobs = [["criterion=snip", "schedule=oneshot"], ["criterion=random", "schedule=oneshot"]]
    with initialize_config_module("prunelab.conf", version_base=None):
        assert canonical_jobs(jobs, lambda o: compose("config", overrides=o)) == (jobs, 0)  # oneshot: 0.9, not dense
    zero = {"schedule": {"target_sparsity": 0.0}}
    assert canonical_jobs(jobs, lambda o: zero) == ([dense_job(jobs[0], keep=("schedule",))], 1)  # not checkable
    own_dir = ["criterion=snip", "hydra.sweep.subdir=x"]
    assert dense_job(own_dir) == ["hydra.sweep.subdir=x", "criterion=magnitude"]  # the user's folder name stays
    regrown = ["criterion=rigl", "++regrowth.delta_t=50", "regrowth.t_end=0.5", "regrowth=set", "seed=1"]
    assert dense_job(regrown) == ["seed=1", "criterion=magnitude"]  # nothing is pruned, nothing regrown
    cut = ["pattern=4x1", "pattern.scope=local", "distribution=erk", "+distribution.power=2", "seed=1",
           "model=lenet5", "prune.exclude_head=false"]
    assert dense_job(cut) == ["seed=1", "model=lenet5", "prune.exclude_head=false", "criterion=magnitude"]


def test_a_sweep_over_patterns_and_distributions_trains_one_dense_run_per_seed():
    """2 patterns x 2 distributions x {0, 0.9} x 2 seeds: the 8 dense jobs are 2 runs (a dense run prunes nothing,
    whatever its pattern or distribution), each composed and valid."""
    from prunelab.config import validate
    from prunelab.sweeper import canonical_jobs

    jobs = [[f"pattern={p}", f"distribution={d}", f"schedule.target_sparsity={t}", f"seed={s}"]
            for p in ("unstructured", "4x1") for d in ("global", "erk") for t in ("0.0", "0.9") for s in (0, 1)]
    with initialize_config_module("prunelab.conf", version_base=None):
        kept, n_dense = canonical_jobs(jobs, lambda o: compose("config", overrides=o))
        dense = [j for j in kept if "schedule.target_sparsity=0.0" in j]
        assert n_dense == 2 and dense == [["schedule.target_sparsity=0.0", f"seed={s}", "criterion=magnitude"]
                                          for s in (0, 1)]
        for job in dense:
            validate(compose("config", overrides=job))
    assert len(kept) == 8 + 2


def test_a_sweep_over_schedules_trains_one_dense_run_per_seed_unless_the_schedule_sets_the_length():
    """at_init / oneshot / iterative x {0, 0.8} x 2 seeds: a dense run prunes nothing whatever its schedule, so the
    dense jobs are 2 runs (the target kept: it makes them dense); with ``trainer.finetune_steps`` the schedule's end
    sets the training length, and each schedule keeps its dense run."""
    from prunelab.config import validate
    from prunelab.sweeper import canonical_jobs, is_dense

    jobs = [[f"schedule={k}", *(["schedule.end_step=40"] if k == "iterative" else []), f"schedule.target_sparsity={t}",
             f"seed={s}", "trainer.max_steps=100"] for k in ("at_init", "oneshot", "iterative") for t in ("0.0", "0.8")
            for s in (0, 1)]
    with initialize_config_module("prunelab.conf", version_base=None):
        kept, n_dense = canonical_jobs(jobs, lambda o: compose("config", overrides=o))
        dense = [j for j in kept if "schedule.target_sparsity=0.0" in j]
        assert n_dense == 2 and dense == [["schedule.target_sparsity=0.0", f"seed={s}", "trainer.max_steps=100",
                                           "criterion=magnitude"] for s in (0, 1)]
        for job in dense:
            validate(compose("config", overrides=job))
        short = [["schedule.start_step=5", "schedule.end_step=25", "schedule.target_sparsity=0.0", f"seed={s}",
                  "+experiment=criteria_fmnist", "trainer.max_steps=40"] for s in (0, 1)]
        assert canonical_jobs(short, lambda o: compose("config", overrides=o)).jobs == [
            [*j, "criterion=magnitude"] for j in short]  # the preset's window (to 1,800) would not fit 40 steps
        # a re-run of a sweep that an earlier version ran (its at_init dense job kept schedule=at_init): that dense
        # job keeps the form its directory records, so the re-run hands back its result instead of being refused
        at_init = lambda c: is_dense(c) and c.schedule.end == 0.0 and c.schedule.pruning_frequency == 1  # noqa: E731
        kept, n_dense = canonical_jobs(jobs, lambda o: compose("config", overrides=o), recorded=at_init)
        assert n_dense == 4 and [j for j in kept if "schedule.target_sparsity=0.0" in j] == [
            *(["schedule=at_init", "schedule.target_sparsity=0.0", f"seed={s}", "trainer.max_steps=100",
               "criterion=magnitude"] for s in (0, 1)),
            *(["schedule.target_sparsity=0.0", f"seed={s}", "trainer.max_steps=100", "criterion=magnitude"]
              for s in (0, 1))]
        tuned = [[*j, "trainer.finetune_steps=100"] for j in jobs]
        kept, n_dense = canonical_jobs(tuned, lambda o: compose("config", overrides=o))
        assert n_dense == 6 and all(j[0].startswith("schedule=") for j in kept)
    assert len(kept) == 12 and len(jobs) == 12
    from prunelab.sweeper import Plan, describe  # the start line counts the dense jobs, dropped duplicates or not

    assert describe(12, Plan(kept, n_dense)) == "[prunelab] sweep: 12 jobs, 6 of them dense baselines (one per seed " \
        "and setting)"
    assert describe(3, Plan([["a"], ["b"]], 1)) == "[prunelab] sweep: 2 jobs, 1 of them a dense baseline (one per " \
        "seed and setting; 1 duplicate dense job dropped)"
    assert describe(1, Plan([["a"]], 0)) == "[prunelab] sweep: 1 job"


# ------------------------------------------------------------------------------- the committed comparison preset


def test_criteria_fmnist_preset_composes(tmp_path):
    proc = cli(["+experiment=criteria_fmnist", "--cfg", "hydra"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in ("criterion: glob(*,exclude=[rigl,set,static_erk,gmp])", "schedule.target_sparsity: 0.0,0.5,0.75,0.875,0.9375,0.96875,0.984375",
                 "seed: 0,1,2,3,4", "JoblibLauncher", "n_jobs: 2",
                 "_target_: hydra_plugins.prunelab_sweeper.dense_once.DenseOnceSweeper"):  # conf/config.yaml's default
        assert line in proc.stdout, line
    job = cli(["+experiment=criteria_fmnist", "--cfg", "job"], cwd=tmp_path)
    cfg = OmegaConf.create(job.stdout)
    assert cfg.group == "criteria_fmnist" and cfg.dataset.name == "fashion_mnist" and cfg.dataset.root is None
    assert cfg.model.name == "mlp" and list(cfg.model.hidden_sizes) == [300, 100]  # LeNet-300-100
    assert cfg.pattern.max_sparsity_ratio_per_op == 0.999  # 64x overall needs layers above 0.98


def test_glob_sweeps_every_registered_criterion():
    """The preset's criterion glob expands to exactly the registered criteria: a new criterion's YAML is swept, and a
    criterion-group preset that is not one (rigl, set, static_erk: dynamic sparse training and its baseline; gmp:
    magnitude with a window) must be excluded by name."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from prunelab.criteria import CRITERIA

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path("pkg://prunelab.conf"))
    preset = OmegaConf.load(Path(__file__).parents[1] / "conf" / "experiment" / "criteria_fmnist.yaml")
    glob = preset.hydra.sweeper.params.criterion
    (override,) = OverridesParser.create(config_loader=loader).parse_overrides([f"criterion={glob}"])
    assert sorted(override.sweep_string_iterator()) == sorted(CRITERIA.names())


@pytest.mark.slow
def test_a_tiny_criteria_fmnist_runs_end_to_end(tmp_path):
    """The preset on the real data, shrunk by command-line sweeps (which replace the preset's) and a short
    training: 2 criteria x {0, 64x} x 1 seed are 3 jobs (joblib runs one job at a time in-process)."""
    require_fashion_mnist()
    sweep = tmp_path / "sweep"
    proc = cli(["+experiment=criteria_fmnist", "hydra.launcher.n_jobs=1", "criterion=magnitude,random",
                "schedule.target_sparsity=0.0,0.984375", "seed=0", *FMNIST_FAST, f"hydra.sweep.dir={sweep}"],
               cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Hydra really ran prunelab's sweeper (its line, and one dense job where the basic sweeper would run two)
    assert "[prunelab] sweep: 3 jobs, 1 of them a dense baseline (one per seed and setting; 1 duplicate dense job " \
        "dropped)" in proc.stdout
    jobs = {p.name.rsplit("_", 1)[0]: json.loads((p / "summary.json").read_text()) for p in sweep.iterdir()
            if p.is_dir() and not p.name.startswith(".")}  # <name>_<fingerprint>
    assert sorted(jobs) == ["dense-seed0", "magnitude-s0.984375-seed0", "random-s0.984375-seed0"]
    for name, s in jobs.items():
        assert s["status"] == "finished" and s["dataset"] == "fashion_mnist" and s["model"] == "mlp", name
    dense = jobs["dense-seed0"]
    assert dense["dense"] is True and dense["name"] == "dense-seed0" and dense["sparsity/actual"] == 0.0
    pruned = jobs["magnitude-s0.984375-seed0"]
    assert pruned["dense"] is False and pruned["name"] == "magnitude-s0.984375-seed0"
    assert pruned["sparsity/actual"] == pytest.approx(0.984375, abs=1e-5)
    assert max(pruned["sparsity/layers"].values()) <= 0.999 + 1e-9


@pytest.mark.parametrize("overrides, name", [
    (["criterion=snip"], "snip-s0.90-seed0"),
    (["criterion=snip", "criterion.ablation=shuffle"], "snip-shuffle-s0.90-seed0"),
    (["criterion=rigl"], "rigl-s0.90-seed0"),  # not "random-...": its initial masks' criterion
    (["criterion=set", "seed=2"], "set-s0.90-seed2"),
    (["criterion=static_erk"], "static_erk-s0.90-seed0"),  # not "random-...": the preset labels its method
    (["criterion=gmp", "criterion.label=gmp_zhu"], "gmp_zhu-s0.90-seed0"),
    (["criterion=rigl", "+criterion.label=rigl_long"], "rigl_long-s0.90-seed0"),  # a label wins over the updater
    (["criterion=snip", "schedule.target_sparsity=0.0", "seed=3"], "dense-seed3"),
    (["schedule.target_sparsity=0.9375"], "magnitude-s0.9375-seed0"),
])
def test_run_and_job_directories_carry_the_run_name(overrides, name):
    """A job directory says what it computes, as the W&B run name does: the ablation and the regrowth updater
    included (two sweeps' jobs that differ only there no longer read alike), then the config's fingerprint."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from omegaconf import OmegaConf

    from prunelab.app import run_name
    from prunelab.config import fingerprint_resolver

    with initialize_config_module("prunelab.conf", version_base=None):
        cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
    assert run_name(cfg) == name
    assert OmegaConf.select(cfg, "hydra.sweep.subdir") == f"{name}_{fingerprint_resolver(_root_=cfg)}"
    assert OmegaConf.select(cfg, "hydra.run.dir").endswith(f"_{name}")


def test_the_joblib_start_line_says_the_threads_each_job_gets(monkeypatch, capsys):
    """CPUs / jobs at once, unless the jobs' trainer.num_threads or OMP_NUM_THREADS choose; more threads than CPUs
    are said to run slower."""
    from types import SimpleNamespace

    from prunelab import sweep
    from prunelab.training import batches

    monkeypatch.setattr(batches, "usable_cpus", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    def jobs(*threads):
        return [SimpleNamespace(config=OmegaConf.create({"trainer": {"num_threads": t}})) for t in threads]

    cases = [((2, jobs(None, None, None)), 2, "2 job(s) at once on 4 CPU(s), 2 torch thread(s) each (trainer."
                                              "num_threads or OMP_NUM_THREADS choose instead)\n"),
             ((-1, jobs(None)), 4, "1 job(s) at once on 4 CPU(s), 4 torch thread(s) each"),
             ((2, jobs(3, 3)), 2, "3 torch thread(s) each (trainer.num_threads); 2 x 3 threads on 4 CPUs run slower "
                                  "than 4\n"),
             ((2, jobs(None, 1)), 2, "2 torch thread(s) each (trainer.num_threads or OMP_NUM_THREADS choose instead); "
                                     "the jobs that set trainer.num_threads use theirs (1)\n")]
    for (n_jobs, js), want, line in cases:
        assert sweep.job_threads(n_jobs, js) == want
        assert line in capsys.readouterr().out
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert sweep.job_threads(2, jobs(None, None)) is None
    assert "3 torch thread(s) each (OMP_NUM_THREADS); 2 x 3 threads on 4 CPUs run slower than 4" in capsys.readouterr().out


def test_a_rerun_refused_as_another_sweep_names_what_an_earlier_version_composed_otherwise(tmp_path):
    """The same command re-run where an earlier version ran it: a job whose options compose another config now
    (random gained criterion.stream on 2026-12-08) is no job of that sweep, and the refusal says why, naming the
    run that is there and the keys that differ, not only "another sweep"."""
    import re

    sweep = tmp_path / "sweep"
    args = [*FAST, "logger=none", "-m", "criterion=random", "seed=0", f"hydra.sweep.dir={sweep}"]
    first = cli(args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    (job,) = [p for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")]
    cfg = job / "config.yaml"  # as the earlier version wrote it: no stream key
    cfg.write_text(re.sub(r"\n  stream: independent", "", cfg.read_text()))
    summary = json.loads((job / "summary.json").read_text())
    (job / "summary.json").write_text(json.dumps({**summary, "fingerprint": "0000beef" * 8}))
    old = job.with_name(job.name.rpartition("_")[0] + "_0000beef")
    job.rename(old)
    (sweep / "sweep.json").write_text(json.dumps({"jobs": {old.name: "0000beef" * 8}}))
    again = cli([*args, "trainer.resume=auto"], cwd=tmp_path)
    assert again.returncode == 2, again.stderr[-2000:]
    (line,) = again.stderr.strip().splitlines()
    assert f"; its run {old.name} there had criterion.stream (unset there, \"independent\" here)): choose a new " \
        "hydra.sweep.dir" in line, line
