"""Sweeps that survive their jobs: checks before any job runs, a job per process, and the failed-jobs list.

* **Job directories are named by what they compute**: ``<run name>_<fingerprint>``
  (``conf/config.yaml``, :mod:`prunelab.naming`), so a re-run sweep, in any order, finds each job's directory, and jobs of different
  configs never share one.
* **Before any job runs** (:func:`check_sweep`, called by prunelab's launchers with the composed jobs): every
  job's config is valid, no two jobs compute the same run, the sweep directory holds no other sweep (its
  ``sweep.json`` lists the jobs it was made for: a re-run of those jobs, or some of them, is the same sweep;
  anything else is refused), and a re-run continues only with ``trainer.resume=auto`` (finished jobs of the same
  config are reused, unfinished ones resumed; the earlier ``multirun.yaml`` is kept as ``multirun.<n>.yaml``). A
  refused sweep leaves the directory as it was.
* **Jobs survive each other**: :class:`JoblibLauncher` runs every job in a process of its own (``n_jobs`` at a
  time), so a job the OS kills (out of memory) is recorded as failed and the others go on; the submitit
  launchers collect every job whatever happened to the others.
* **The sweep ends with the list** (:class:`FailedJobs`): the jobs of this sweep that did not finish, and a
  non-zero exit if there are any.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pickle
import re
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus, run_job, setup_globals
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from . import rundir
from .errors import Abort, ConfigError, catch_interrupts
from .naming import earlier_names

EXIT_FAILED_JOBS = 1
MANIFEST = "sweep.json"
#: the overrides ``K=V`` of the command line that prunelab rewrote as ``++K=V`` (see
#: :func:`prunelab.__main__.force_add_in_sweep`)
FORCE_ADDED: set[str] = set()


# ----------------------------------------------------------------------------------------------- statuses
def job_statuses(sweep_dir: str | Path, jobs: Sequence[str] | None = None) -> dict[str, str]:
    """Job directory name -> status (finished, failed, interrupted, killed, running, never started) of the given
    jobs of a sweep (default: every job directory in it); a failure carries the first line of its error."""
    sweep_dir = Path(sweep_dir)
    if jobs is None:
        jobs = sorted(p.name for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if sweep_dir.is_dir() else []
    out: dict[str, str] = {}
    for name in jobs:
        state = rundir.inspect(sweep_dir / name)
        status = state.observed if state.observed != "empty" else "never started"
        if state.summary_problem:
            status = f"unreadable: {state.summary_problem}"
        error = (state.summary or {}).get("error")
        out[name] = f"{status}: {str(error).splitlines()[0]}" if error and status != "finished" else status
    return out


# ----------------------------------------------------------------------------------------------- the sweep's start
@dataclasses.dataclass
class SweepStart:
    """What a sweep found when it started, to put it back if it is refused."""

    sweep_dir: Path
    multirun_yaml: bytes | None
    jobs: list[str] = dataclasses.field(default_factory=list)
    #: job directory -> the job's overrides as typed (a failed job is named by both: two directories may read alike)
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)
    checked: bool = False
    #: job directory -> why it failed in this sweep (where its directory may still show an earlier attempt)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class JobFailed:
    """A sweep job's return value when it failed in its process (the error, one line): a job refused before it
    began leaves its directory as it was, so that only this says why."""

    error: str


@dataclasses.dataclass(frozen=True)
class JobStopped(JobFailed):
    """A sweep job that a signal stopped (SIGINT / SIGTERM): the sweep stops with it. ``checkpointed``: it was
    training, and wrote its checkpoint (else it stopped in its start-up)."""

    signum: int | None = None
    checkpointed: bool = True


class SweepInterrupted(Exception):
    """A signal stopped a sweep: the jobs it stopped, the jobs not started. The message says how to continue it all
    (the same sweep, ``trainer.resume=auto``); the exit code is 128 + the signal."""

    def __init__(self, signum: int | None, stopped: Sequence[tuple[str, bool]], left: int, sweep_dir: Path) -> None:
        import shlex

        self.signum = signum
        how = f"signal {signal.Signals(signum).name}" if signum else "a signal"
        jobs = ", ".join(f"{name} ({'its checkpoint written' if done else 'in its start-up'})" for name, done in stopped)
        kept = [a for a in sys.argv[1:] if a.lstrip("+~").split("=", 1)[0] not in ("hydra.sweep.dir", "trainer.resume")]
        command = " ".join([shlex.quote(sys.executable), "-m", "prunelab", *map(shlex.quote, kept)])
        super().__init__(f"sweep stopped by {how}" + (f" in job(s) {jobs}" if jobs else " between jobs") +
                         f"; {left} job(s) not started; continue with {command} "
                         f"hydra.sweep.dir={shlex.quote(str(sweep_dir))} trainer.resume=auto")


def stop_of(ret: JobReturn) -> JobStopped | None:
    """The stop a job's return reports, or None."""
    value = ret.return_value if ret.status == JobStatus.COMPLETED else None
    return value if isinstance(value, JobStopped) else None


def note_returns(jobs: Sequence[Job], returns: Sequence[JobReturn]) -> list[JobReturn]:
    """Keep the errors of the jobs that failed in this sweep for the list at its end (:class:`FailedJobs`)."""
    if _START:
        for job, ret in zip(jobs, returns):
            value = ret.return_value if ret.status == JobStatus.COMPLETED else None
            if isinstance(value, JobFailed):
                _START[0].errors[job.subdir] = value.error
    return list(returns)


_START: list[SweepStart] = []


def undo_start() -> None:
    """A refused sweep: restore the sweep directory as it was (Hydra's multirun.yaml, new folders removed)."""
    if not _START or _START[0].checked:
        return
    start = _START.pop()
    path = start.sweep_dir / "multirun.yaml"
    if start.multirun_yaml is not None:
        path.write_bytes(start.multirun_yaml)
    elif path.exists():
        path.unlink()
    rundir.remove_new_dirs()


class FailedJobs(Callback):
    """Notes the sweep directory at the start (so a refused sweep can be undone) and lists the jobs of this
    sweep that did not finish at the end, exiting non-zero if there are any."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        try:
            rundir.check_target(sweep_dir, "hydra.sweep.dir")
        except ConfigError as exc:  # Hydra would turn it into a warning and go on
            raise Abort(exc) from exc
        old = sweep_dir / "multirun.yaml"
        _START[:] = [SweepStart(sweep_dir, old.read_bytes() if old.is_file() else None)]
        rundir.note_new_dirs(sweep_dir)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        planned = _START[0].jobs if _START and _START[0].checked else None
        statuses = job_statuses(sweep_dir, planned)
        statuses.update({name: f"failed: {error}" for name, error in (_START[0].errors if _START else {}).items()
                         if name in statuses})
        failed = {name: st for name, st in statuses.items() if not st.startswith("finished")}
        print(f"[prunelab] sweep {sweep_dir}: {len(statuses) - len(failed)} of {len(statuses)} jobs finished",
              file=sys.stderr, flush=True)
        if failed:
            for name, st in failed.items():
                given = _START[0].overrides.get(name) if _START else None
                print(f"[prunelab]   failed job {name}" + (f" ({given})" if given else "") + f": {st}", file=sys.stderr)
            fix = ", once what their lines above say is mended" if any(n in _START[0].errors for n in failed) else ""
            print(f"prunelab: error: sweep={sweep_dir}: {len(failed)} failed job(s): {', '.join(failed)}; "
                  f"re-run the same sweep with hydra.sweep.dir and trainer.resume=auto to continue them{fix}",
                  file=sys.stderr, flush=True)
            sys.exit(EXIT_FAILED_JOBS)


# ----------------------------------------------------------------------------------------------- checks
@dataclasses.dataclass
class Job:
    """One composed job of a sweep."""

    num: int
    overrides: list[str]
    config: DictConfig
    subdir: str
    fingerprint: str
    #: overrides that only say where the job runs (see :func:`recorded_job`), for launchers that compose
    #: the job again from its overrides
    extra_overrides: list[str] = dataclasses.field(default_factory=list)

    @functools.cached_property
    def plain(self) -> dict[str, Any]:
        """The job's resolved config without Hydra's node, as plain containers (what its fingerprint hashes)."""
        from .config import task_config

        return task_config(self.config)

    @property
    def label(self) -> str:
        """``sweep job #N: <overrides>``, as the user typed them (without the ``++`` prunelab's force-add put in)."""
        return f"sweep job #{self.num}: {self.typed}"

    @property
    def typed(self) -> str:
        """The job's overrides as a user types them: without prunelab's ``++``, booleans as YAML writes them
        (Hydra's sweeper renders ``trainer.fused_step=false,true`` as ``=False`` / ``=True``)."""
        return " ".join(re.sub(r"=(True|False)$", lambda m: "=" + m.group(1).lower(), o[2:] if o in FORCE_ADDED else o)
                        for o in self.overrides)


def compose_jobs(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[Job]:
    """Every job's config, as the launcher runs it (job number and id set), its directory and fingerprint."""
    from .checks import fingerprint_of

    jobs = []
    for i, overrides in enumerate(job_overrides):
        num = initial_job_idx + i
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = f"{cfg.hydra.job.name}_{num}"
            cfg.hydra.job.num = num
        jobs.append(Job(num, list(overrides), cfg, str(OmegaConf.select(cfg, "hydra.sweep.subdir")),
                        fingerprint_of(cfg, 1)))
    return jobs


def recorded_job(job: Job, recorded: dict[str, str], sweep_dir: Path) -> bool:
    """Whether the sweep's manifest (``recorded``: directory -> fingerprint) holds ``job``; the job then runs in
    the directory recorded for its config, also where that is not the name it has now: a sweep started before the
    loader settings left the fingerprint (its directories are named by the fingerprint of that time), or re-run
    with other loader settings. Only a directory of the job's run name is taken, whose recorded fingerprint is
    the job's (now or then) or whose run has the job's config (its ``config.yaml``); a name the run had before
    (:func:`prunelab.naming.earlier_names`: before a preset labelled its method) counts as its own."""
    if recorded.get(job.subdir) == job.fingerprint:
        return True
    name, _, short = job.subdir.rpartition("_")
    names = {name, *earlier_names(job.config)}
    legacy = rundir.config_fingerprint(job.plain, 1, rundir.LEGACY_EXECUTION_KEYS)
    same_name = [d for d in recorded if d.rpartition("_")[0] in names and len(d.rpartition("_")[2]) == len(short)]
    found = next((d for d in same_name if recorded[d] in (job.fingerprint, legacy)), None) or \
        next((d for d in same_name if rundir.inspect(sweep_dir / d).computes(job.fingerprint)), None)
    if found is None:
        return False
    job.subdir = found
    job.extra_overrides = [f"hydra.sweep.subdir='{found}'"]
    with read_write(job.config.hydra.sweep), open_dict(job.config.hydra.sweep):
        job.config.hydra.sweep.subdir = found
    return True


def ran_otherwise(job: Job, recorded: dict[str, str], sweep_dir: Path) -> str:
    """Where the sweep's manifest holds a job of ``job``'s run name (or a name it had before) that computed
    another config (the same command under an earlier version, whose options composed differently), the closest
    such run: ``; its run random-s0.50-seed0_1a2b3c4d there had criterion.stream (unset there, "independent"
    here)``; else ""."""
    names = {job.subdir.rpartition("_")[0], *earlier_names(job.config)}
    new = rundir.flatten(json.loads(json.dumps(job.plain, default=str)))
    found = []
    for d in (d for d in recorded if d.rpartition("_")[0] in names):
        old = rundir.read_config_file(sweep_dir / d)
        if old is not None and (keys := rundir.differing_keys(rundir.flatten(old), new)):
            found.append((len(keys), d, rundir.differences(old, job.plain)))
    return f"; its run {min(found)[1]} there had {min(found)[2]}" if found else ""


def check_layers(cfg: DictConfig, models: dict[str, Any]) -> None:
    """What a run checks on its model before it writes anything (``model.head``, the ``prune.include`` and
    ``prune.exclude`` globs, a layer left to prune by the pattern), checked for a sweep's job before any job runs:
    a glob that only one of the swept models has would otherwise fail its job after the others trained. Each
    distinct model config is built once (``models``: the cache)."""
    from . import models as models_mod
    from .layers import DEFAULT_OP_TYPES, select_layers
    from .options import config_to_dict
    from .pruner import build_pattern

    key = json.dumps(OmegaConf.to_container(cfg.model, resolve=True), sort_keys=True, default=str)
    if key not in models:
        models[key] = models_mod.build(cfg.model)
    model = models[key]
    head = models_mod.head_name(model, cfg.model)
    prune = config_to_dict(cfg.get("prune"))
    select_layers(model, build_pattern(cfg.pattern), prune.get("op_types", DEFAULT_OP_TYPES),
                  prune.get("include") or (), prune.get("exclude") or (),
                  head if prune.get("exclude_head", True) else None, warn=False)  # the job itself says what it skips


def check_sweep(config: DictConfig, jobs: list[Job]) -> None:
    """Refuse the sweep (one line) before any job runs if a job is invalid, two jobs compute the same run, the
    directory holds another sweep, or holds this one without ``trainer.resume=auto``; then record the jobs."""
    from hydra.core.hydra_config import HydraConfig

    from .config import check_overrides, validate

    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    seen: dict[str, Job] = {}
    models: dict[str, Any] = {}
    for job in jobs:
        HydraConfig.instance().set_config(job.config)
        try:
            validate(job.config)
            check_overrides(job.config, job.overrides)
            check_layers(job.config, models)
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.value, f"{exc.allowed} ({job.label})") from None
        if job.fingerprint in seen:
            first = seen[job.fingerprint]
            differ = rundir.differences(first.plain, job.plain, execution_keys=(),
                                        labels=(f"in #{first.num}", f"in #{job.num}"))
            why = f"they differ only in {differ}, which do not change a run's results" if differ else \
                "their configs are the same"
            raise ConfigError("sweep", f"jobs #{first.num} and #{job.num}", f"jobs that each compute a run of their "
                              f"own (these two compute the same run: {why}: {first.typed} | {job.typed})")
        seen[job.fingerprint] = job
    manifest, _ = rundir.read_json(sweep_dir / MANIFEST)
    recorded: dict[str, str] = dict((manifest or {}).get("jobs", {}))
    new = [j for j in jobs if not recorded_job(j, recorded, sweep_dir)]
    if recorded and new:
        raise ConfigError("hydra.sweep.dir", str(sweep_dir), f"a directory without another sweep (it holds a sweep "
                          f"of {len(recorded)} jobs; {len(new)} of these {len(jobs)} are not among them, e.g. "
                          f"{new[0].label}{ran_otherwise(new[0], recorded, sweep_dir)}): choose a new hydra.sweep.dir")
    states = {j.subdir: rundir.inspect(sweep_dir / j.subdir) for j in jobs}
    ran = [j for j in jobs if states[j.subdir].has_run]
    if ran and rundir.resume_mode(jobs[0].config.trainer.resume) == rundir.RESUME_OFF:
        raise ConfigError("hydra.sweep.dir", str(sweep_dir), f"a new directory, or this one with trainer.resume=auto "
                          f"to continue the sweep there ({len(ran)} of its {len(jobs)} jobs ran there before: finished "
                          "jobs are reused, unfinished ones resumed)")
    for job in jobs:
        try:
            rundir.decide(states[job.subdir], job.fingerprint, job.config.trainer.resume, 1,
                          config=job.plain)
        except ConfigError as exc:
            if rundir.resume_mode(job.config.trainer.resume) != rundir.RESUME_TRUE or states[job.subdir].has_run:
                raise ConfigError(exc.key, exc.value, f"{exc.allowed} ({job.label})") from None
    sweep_dir.mkdir(parents=True, exist_ok=True)
    recorded.update({j.subdir: j.fingerprint for j in jobs})
    rundir.write_json_atomic(sweep_dir / MANIFEST, {"jobs": recorded})
    if not _START:
        _START.append(SweepStart(sweep_dir, None))
    keep_earlier_command(_START[0])
    _START[0].jobs += [j.subdir for j in jobs if j.subdir not in _START[0].jobs]
    _START[0].overrides.update({j.subdir: j.typed for j in jobs})
    _START[0].checked = True
    rundir.mark_started()


def keep_earlier_command(start: SweepStart) -> None:
    """A re-run sweep: keep the ``multirun.yaml`` Hydra wrote for the earlier run (the command of the whole sweep,
    which a re-run of some of its jobs would replace) as ``multirun.<n>.yaml``, once for each distinct one."""
    path = start.sweep_dir / "multirun.yaml"
    if start.multirun_yaml is None or start.checked or (path.is_file() and path.read_bytes() == start.multirun_yaml):
        return
    kept = sorted(start.sweep_dir.glob("multirun.*.yaml"))
    if any(k.read_bytes() == start.multirun_yaml for k in kept):
        return
    n = 1 + max((int(k.name.split(".")[1]) for k in kept if k.name.split(".")[1].isdigit()), default=0)
    with rundir.atomic_write(start.sweep_dir / f"multirun.{n}.yaml", "wb") as f:
        f.write(start.multirun_yaml)


# ----------------------------------------------------------------------------------------------- launchers
# The launcher classes Hydra instantiates live in hydra_plugins/prunelab_launchers (Hydra only takes plugins from
# that namespace); they hand their work to the functions below.
def _run_in_process(launcher: Any, job: Job) -> JobReturn:
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(job.config)
    return run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=job.config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def launch_basic(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Hydra's basic launch (one job after the other, in this process), after :func:`check_sweep`."""
    setup_globals()
    jobs = compose_jobs(launcher, job_overrides, initial_job_idx)
    check_sweep(launcher.config, jobs)
    returns: list[JobReturn] = []
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).absolute()
    for job in jobs:  # a job a signal stopped stops the sweep: Ctrl-C, or a scheduler's SIGTERM before it kills
        try:
            returns.append(_run_in_process(launcher, job))
        except KeyboardInterrupt as exc:  # outside the job's own code (Hydra's set-up of the job)
            raise SweepInterrupted(getattr(exc, "signum", None) or int(signal.SIGINT), [(job.subdir, False)],
                                   len(jobs) - len(returns) - 1, sweep_dir) from None
        stop = stop_of(returns[-1])
        if stop is not None:
            note_returns(jobs, returns)
            raise SweepInterrupted(stop.signum, [(job.subdir, stop.checkpointed)], len(jobs) - len(returns),
                                   sweep_dir)
    return note_returns(jobs, returns)


def launch_joblib(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """``hydra/launcher=joblib``: ``n_jobs`` jobs at a time, each in a process of its own, so a job killed by the
    OS costs no other job; a killed job is recorded as failed in its directory, its checkpoint kept
    (``trainer.resume=auto`` in a re-run continues it). The processes are forked from a server that imported
    prunelab and torch once (multiprocessing's forkserver), so a job starts at once; threads of this process
    only wait for them."""
    import multiprocessing
    from hydra.core.singleton import Singleton
    from joblib import Parallel, delayed

    setup_globals()
    jobs = compose_jobs(launcher, job_overrides, initial_job_idx)
    check_sweep(launcher.config, jobs)
    multiprocessing.set_forkserver_preload(["prunelab.app", "prunelab.sweep"])
    state = Singleton.get_state()
    n_jobs = int(launcher.joblib.get("n_jobs", -1) or -1)
    threads = job_threads(n_jobs, jobs)
    with Stopping() as stop:
        returns = Parallel(n_jobs=n_jobs, backend="threading")(
            delayed(_in_child)(launcher, job, state, stop, threads) for job in jobs)
    ran = [(job, ret) for job, ret in zip(jobs, returns) if ret is not None]
    note_returns([job for job, _ in ran], [ret for _, ret in ran])
    if stop.signum is not None:  # a signal to this process, or to a job's alone (it returned its stop)
        stopped = [(job.subdir, s.checkpointed) for job, ret in ran if (s := stop_of(ret)) is not None]
        raise SweepInterrupted(stop.signum, stopped, len(jobs) - len(ran),
                               Path(str(launcher.config.hydra.sweep.dir)).absolute())
    return [ret for _, ret in ran]


def job_threads(n_jobs: int, jobs: Sequence[Job]) -> int | None:
    """Torch threads for each job of a joblib sweep, ``n_jobs`` at once: this machine's CPUs shared between the jobs
    at once (each would otherwise take them all, and jobs on oversubscribed cores run several times slower); None
    where ``OMP_NUM_THREADS`` chooses. A job's ``trainer.num_threads`` wins over both. Said in one line."""
    from joblib import effective_n_jobs

    from .training.batches import usable_cpus

    cpus = usable_cpus()
    at_once = max(1, min(effective_n_jobs(n_jobs), len(jobs)))
    omp = os.environ.get("OMP_NUM_THREADS")
    threads = None if omp else max(1, cpus // at_once)
    asked = [OmegaConf.select(job.config, "trainer.num_threads") for job in jobs]
    own = sorted({int(t) for t in asked if t is not None})
    if own and None not in asked:
        each, most = f"{'/'.join(map(str, own))} torch thread(s) each (trainer.num_threads)", max(own)
    else:
        each = f"{omp} torch thread(s) each (OMP_NUM_THREADS)" if omp else \
            f"{threads} torch thread(s) each (trainer.num_threads or OMP_NUM_THREADS choose instead)"
        most = max([int(omp) if omp and omp.isdigit() else threads or 1, *own])
        if own:
            each += f"; the jobs that set trainer.num_threads use theirs ({'/'.join(map(str, own))})"
    over = f"; {at_once} x {most} threads on {cpus} CPUs run slower than {cpus}" if at_once * most > cpus else ""
    print(f"[prunelab] joblib: {at_once} job(s) at once on {cpus} CPU(s), {each}{over}", flush=True)
    return threads


class Stopping:
    """While a joblib sweep runs: SIGINT / SIGTERM to this process is passed on to the running jobs' processes
    (each writes its checkpoint and stops) and no further job starts. ``signum``: the signal, once one came."""

    def __init__(self) -> None:
        import threading

        self.signum: int | None = None
        self.running: set[Any] = set()
        self.lock = threading.Lock()
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Stopping:
        import threading

        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signum = signum
        with self.lock:
            procs = list(self.running)
        for proc in procs:  # a terminal's Ctrl-C reaches them anyway; a scheduler's SIGTERM to this one does not
            with contextlib.suppress(OSError, ValueError):
                os.kill(proc.pid, signum)


def _in_child(launcher: Any, job: Job, singleton_state: Any, stop: Stopping,
              threads: int | None = None) -> JobReturn | None:
    """One job in a process of its own (``threads`` torch threads unless its config says); None, not started,
    once a signal stopped the sweep."""
    import multiprocessing

    import cloudpickle

    sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).absolute()
    payload = cloudpickle.dumps({"context": launcher.hydra_context, "task": launcher.task_function,
                                 "config": job.config, "singletons": singleton_state, "threads": threads})
    with tempfile.TemporaryDirectory(prefix="prunelab-job-") as tmp:
        out = Path(tmp) / "return.pkl"
        proc = multiprocessing.get_context("forkserver").Process(
            target=run_job_payload, args=(payload, str(out)), name=f"prunelab-job-{job.num}")
        with stop.lock:
            if stop.signum is not None:
                return None
            proc.start()
            stop.running.add(proc)
        proc.join()
        with stop.lock:
            stop.running.discard(proc)
        if out.exists():
            ret = pickle.loads(out.read_bytes())
            stopped = stop_of(ret)
            if stopped is not None and stop.signum is None:  # a signal to that job alone stops the sweep too
                stop.signum = stopped.signum
            return ret
        code = proc.exitcode
    return job_lost(job, sweep_dir, code)


def run_job_payload(payload: bytes, out: str) -> None:
    """In a job's own process: run the pickled job as Hydra's launchers do and pickle its ``JobReturn``."""
    import cloudpickle
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.singleton import Singleton

    from .streams import survive_closed_streams

    survive_closed_streams()  # a job process started by the forkserver: its own streams
    catch_interrupts()  # in its start-up, as the CLI (the trainer has its own)
    spec = pickle.loads(payload)
    if spec.get("threads"):  # the trainer sets trainer.num_threads over it
        import torch

        torch.set_num_threads(int(spec["threads"]))
    setup_globals()
    Singleton.set_state(spec["singletons"])
    HydraConfig.instance().set_config(spec["config"])
    ret = run_job(hydra_context=spec["context"], task_function=spec["task"], config=spec["config"],
                  job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    try:
        data = cloudpickle.dumps(ret)
    except Exception as exc:  # noqa: BLE001 - an unpicklable return value must not lose the job's status
        ret.return_value = RuntimeError(f"{type(exc).__name__}: {exc}")
        data = cloudpickle.dumps(ret)
    Path(out).write_bytes(data)


def job_lost(job: Job, sweep_dir: Path, code: int | None) -> JobReturn:
    """The ``JobReturn`` of a job whose process died, recorded as failed in its directory (never over a finished
    or a live run; its checkpoint stays)."""
    how = f"killed by signal {signal.Signals(-code).name}" if code is not None and code < 0 else \
        f"ended (exit status {code}) without a result"
    hint = " (e.g. by the OS when memory ran out)" if code == -signal.SIGKILL else ""
    error = f"JobLost: the job's process was {how}{hint}"
    job_dir = sweep_dir / job.subdir
    state = rundir.inspect(job_dir)
    if state.observed not in ("finished", "running"):
        job_dir.mkdir(parents=True, exist_ok=True)
        rundir.write_status(job_dir, "failed", error=error, name=(state.summary or {}).get("name") or job.subdir)
    print(f"prunelab: error: {job.label}: {error}", file=sys.stderr, flush=True)
    # returned like a job that failed in its process (recorded, not raised: Hydra's sweeper would raise a FAILED
    # return's exception and end the sweep with a traceback); the sweep's end lists it from its directory
    ret = JobReturn(overrides=job.overrides, cfg=job.config, hydra_cfg=job.config, working_dir=os.getcwd(),
                    task_name=str(job.config.hydra.job.name), status=JobStatus.COMPLETED)
    ret.return_value = None
    return ret


def launch_submitit(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """A submitit launch (every job a process of its own, local or on SLURM) after :func:`check_sweep`, collecting
    every job whatever happened to the others: one without a result (killed, timed out) is recorded as failed
    (the plugin itself stops at the first such job, with a traceback)."""
    import submitit
    from hydra.core.singleton import Singleton
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    setup_globals()
    jobs = compose_jobs(launcher, job_overrides, initial_job_idx)
    check_sweep(launcher.config, jobs)
    kind, params = launcher._EXECUTOR, dict(launcher.params)
    init = {"folder": params.pop("submitit_folder")}
    if "max_num_timeout" in params:
        init[f"{kind}_max_num_timeout"] = params.pop("max_num_timeout")
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor = submitit.AutoExecutor(cluster=kind, **init)
    executor.update_parameters(**{k if k in shared else f"{kind}_{k}": v for k, v in params.items()})
    state = Singleton.get_state()
    args = [(j.overrides + j.extra_overrides, "hydra.sweep.dir", j.num, f"job_id_for_{j.num}", state) for j in jobs]
    submitted = executor.map_array(launcher, *zip(*args))
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir)).absolute()
    out = []
    for job, sub in zip(jobs, submitted):
        try:
            out.append(sub.results()[0])
        except Exception:  # noqa: BLE001 - submitit's UncompletedJobError / FailedJobError
            out.append(job_lost(job, sweep_dir, _exit_code(sub)))
    return note_returns(jobs, out)


def _exit_code(sub: Any) -> int | None:
    """A finished submitit job's exit code as subprocess gives it (negative: a signal), where it can be told."""
    proc = getattr(sub, "_process", None)
    code = proc.poll() if proc is not None and hasattr(proc, "poll") else None
    return code if isinstance(code, int) else None


__all__ = ["FailedJobs", "check_sweep", "job_statuses", "undo_start", "launch_basic", "launch_joblib",
           "launch_submitit", "run_job_payload"]
