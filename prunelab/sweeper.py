"""Sweep launch: the dense baseline is trained once per seed, whatever the criterion list.

A sweep such as ``criterion=a,b,c schedule.target_sparsity=0.0,0.5 seed=0,1`` expands to one job per
combination, so Hydra's basic sweeper would train the same dense model (target sparsity 0: nothing is pruned,
the criterion never acts) once per criterion and seed. :func:`canonical_jobs` rewrites every job whose composed
config has target sparsity 0 into one criterion-independent dense job (the criterion's, pattern's,
distribution's, regrowth's and schedule's overrides dropped,
``criterion=<dense_criterion>``; its directory is named ``dense-seed<seed>_<fingerprint>`` by
:mod:`prunelab.naming`, as every job's) and drops the duplicates this
makes, keeping the order of the first occurrences. The report then uses that one dense run per seed as the
baseline of every criterion.

Hydra only instantiates sweepers from its plugin namespace, so the sweeper class itself is the thin
``hydra_plugins.prunelab_sweeper.dense_once.DenseOnceSweeper`` (a :class:`BasicSweeper` whose job list goes
through :func:`canonical_jobs`), chosen in ``conf/config.yaml`` by ``override hydra/sweeper: dense_once``; this
module holds the logic and stays importable without Hydra's plugin machinery.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

DENSE_CRITERION = "magnitude"  # the criterion a dense job is run with (it prunes nothing, so any would do)


def override_key(override: str) -> str:
    """The key of a Hydra override string: ``+criterion.alpha=0.5`` -> ``criterion.alpha``."""
    return override.split("=", 1)[0].lstrip("+~")


def is_dense(cfg: Any) -> bool:
    """Whether a composed config is a dense run: target sparsity 0 (nothing is ever pruned)."""
    schedule = cfg.get("schedule") if cfg is not None else None
    target = schedule.get("target_sparsity") if schedule is not None else None
    try:
        return target is not None and float(target) == 0.0
    except (TypeError, ValueError):
        return False  # not a number: the job itself reports the error


#: the config groups a dense job leaves at their defaults: nothing is pruned, nothing regrown, so which criterion,
#: pattern, distribution, regrowth or schedule a sweep's jobs chose changes nothing a dense run computes (the
#: report's :func:`~prunelab.report.data.dense_inert`); a sweep over patterns or schedules trains one dense run per
#: seed, not one per pattern or schedule. The schedule's target stays (0 makes the job dense), and the schedule
#: stays where ``trainer.finetune_steps`` lets its end set the training length or its defaults would not fit the
#: job (:func:`dense_form`).
DENSE_DROPS = ("criterion", "regrowth", "pattern", "distribution", "schedule")
TARGET = "schedule.target_sparsity"


def dense_job(overrides: Sequence[str], dense_criterion: str = DENSE_CRITERION, keep: Sequence[str] = ()) -> list[str]:
    """A dense job's overrides without those of :data:`DENSE_DROPS` (``criterion=...``, ``criterion.*``, ...) but
    the schedule's target and the groups in ``keep``; run with ``dense_criterion`` (its directory name comes from
    :mod:`prunelab.naming`: ``dense-seed<seed>_<fp>``)."""
    drops = tuple(g for g in DENSE_DROPS if g not in keep)
    below = tuple(f"{g}." for g in drops)
    kept = [o for o in overrides if override_key(o) == TARGET
            or not (override_key(o) in drops or override_key(o).startswith(below))]
    kept.append(f"criterion={dense_criterion}")
    return kept


#: what earlier versions left in a dense job: its schedule (until the sweep over schedules), and its pattern and
#: distribution too (until the sweep over patterns) -- a re-run of their sweeps finds its dense runs by these
EARLIER_DENSE_KEEPS = (("schedule",), ("schedule", "pattern", "distribution"))


def valid(cfg: Any) -> bool:
    """Whether a composed config passes prunelab's checks: a dense job keeps its schedule's overrides where the
    schedule's defaults would not fit its training (a preset's window of 1,800 steps in a run of 40)."""
    from .config import validate

    try:
        validate(cfg)
    except Exception:  # noqa: BLE001 - a ConfigError, or a config too partial to check: keep the job's schedule
        return False
    return True


def length_follows_schedule(cfg: Any) -> bool:
    """Whether a composed config's training length depends on its schedule (``trainer.finetune_steps``: so many
    steps after the schedule's last pruning step)."""
    trainer = cfg.get("trainer") if cfg is not None else None
    return trainer is not None and trainer.get("finetune_steps") is not None


class Plan(NamedTuple):
    """The jobs a sweep launches, and how many of them are dense baselines."""

    jobs: list[list[str]]
    dense: int


def canonical_jobs(jobs: Sequence[Sequence[str]], compose: Callable[[list[str]], Any],
                   dense_criterion: str = DENSE_CRITERION, recorded: Callable[[Any], bool] | None = None) -> Plan:
    """The jobs to launch: each job whose composed config (``compose(overrides)``) is dense becomes
    :func:`dense_job`, and a job equal to an earlier one is dropped (first occurrences keep their order).
    ``recorded``: whether a composed job is one the sweep directory already holds (a re-run): a dense job then
    takes the form an earlier version gave it, where that is the one recorded (:data:`EARLIER_DENSE_KEEPS`)."""
    out: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    dense = 0
    for job in jobs:
        job = list(job)
        cfg = compose(job)
        is_baseline = is_dense(cfg)
        if is_baseline:
            job = dense_form(job, cfg, compose, dense_criterion, recorded)
        key = tuple(job)
        if key not in seen:
            seen.add(key)
            out.append(job)
            dense += is_baseline
    return Plan(out, dense)


def dense_form(job: list[str], cfg: Any, compose: Callable[[list[str]], Any], dense_criterion: str,
               recorded: Callable[[Any], bool] | None) -> list[str]:
    """The overrides a dense job runs with: the form the sweep directory records, if an earlier one; else without
    its schedule's overrides where its length does not follow the schedule and the defaults fit; else with them."""
    plain = dense_job(job, dense_criterion)
    composed: dict[tuple[str, ...], Any] = {}  # each form composed once
    if recorded is not None:
        earlier = [dense_job(job, dense_criterion, keep=k) for k in EARLIER_DENSE_KEEPS]
        for form in dict.fromkeys(map(tuple, [plain, *earlier])):
            composed[form] = compose(list(form))
            if recorded(composed[form]):
                return list(form)
    if not length_follows_schedule(cfg) and valid(composed[tuple(plain)] if tuple(plain) in composed
                                                  else compose(plain)):
        return plain
    return dense_job(job, dense_criterion, keep=("schedule",))


def recorded_by(sweep_dir: Any) -> Callable[[Any], bool] | None:
    """For a sweep directory that records its jobs (``sweep.json``: a re-run), whether a composed job's
    fingerprint is among them; None for a new sweep."""
    from pathlib import Path

    from . import rundir
    from .checks import fingerprint_of
    from .sweep import MANIFEST

    manifest, _ = rundir.read_json(Path(str(sweep_dir)) / MANIFEST)
    fingerprints = set(((manifest or {}).get("jobs") or {}).values())
    return (lambda cfg: fingerprint_of(cfg, 1) in fingerprints) if fingerprints else None


def describe(before: int, plan: Plan) -> str:
    """One line for the sweep's start: how many jobs run, and how many dense duplicates were dropped."""
    dropped = before - len(plan.jobs)
    def n(count: int, what: str) -> str:
        return f"{count} {what}{'' if count == 1 else 's'}"

    dense = f"{plan.dense} of them {'a dense baseline' if plan.dense == 1 else 'dense baselines'} (one per seed " \
        f"and setting" + (f"; {n(dropped, 'duplicate dense job')} dropped)" if dropped else ")")
    return f"[prunelab] sweep: {n(len(plan.jobs), 'job')}" + (f", {dense}" if plan.dense else "")


def announce(before: int, plan: Plan) -> None:
    """The sweep's job count, on stdout (stderr is for warnings and the one-line error of a refused sweep)."""
    print(describe(before, plan), flush=True)
