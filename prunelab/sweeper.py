"""Sweep launch: the dense baseline is trained once per seed, whatever the criterion list.

A sweep such as ``criterion=a,b,c schedule.target_sparsity=0.0,0.5 seed=0,1`` expands to one job per
combination, so Hydra's basic sweeper would train the same dense model (target sparsity 0: nothing is pruned,
the criterion never acts) once per criterion and seed. :func:`canonical_jobs` rewrites every job whose composed
config has target sparsity 0 into one criterion-independent dense job (the criterion overrides dropped,
``criterion=<dense_criterion>``, the job directory ``dense-seed<seed>_<fingerprint>``) and drops the duplicates this
makes, keeping the order of the first occurrences. The report then uses that one dense run per seed as the
baseline of every criterion.

Hydra only instantiates sweepers from its plugin namespace, so the sweeper class itself is the thin
``hydra_plugins.prunelab_sweeper.dense_once.DenseOnceSweeper`` (a :class:`BasicSweeper` whose job list goes
through :func:`canonical_jobs`), chosen in ``conf/config.yaml`` by ``override hydra/sweeper: dense_once``; this
module holds the logic and stays importable without Hydra's plugin machinery.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

DENSE_CRITERION = "magnitude"  # the criterion a dense job is run with (it prunes nothing, so any would do)
DENSE_SUBDIR = "dense-seed${seed}_${prunelab.fingerprint:}"  # named by what it computes, as every job (config.yaml)


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


def dense_job(overrides: Sequence[str], dense_criterion: str = DENSE_CRITERION) -> list[str]:
    """A dense job's overrides without the criterion (``criterion=...``, ``criterion.*``), run with
    ``dense_criterion`` in the job directory ``dense-seed<seed>_<fingerprint>`` (unless the job sets its own)."""
    kept = [o for o in overrides if not (override_key(o) == "criterion" or override_key(o).startswith("criterion."))]
    kept.append(f"criterion={dense_criterion}")
    if not any(override_key(o) == "hydra.sweep.subdir" for o in overrides):
        kept.append(f"hydra.sweep.subdir={DENSE_SUBDIR}")
    return kept


def canonical_jobs(jobs: Sequence[Sequence[str]], compose: Callable[[list[str]], Any],
                   dense_criterion: str = DENSE_CRITERION) -> list[list[str]]:
    """The jobs to launch: each job whose composed config (``compose(overrides)``) is dense becomes
    :func:`dense_job`, and a job equal to an earlier one is dropped (first occurrences keep their order)."""
    out: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for job in jobs:
        job = list(job)
        if is_dense(compose(job)):
            job = dense_job(job, dense_criterion)
        key = tuple(job)
        if key not in seen:
            seen.add(key)
            out.append(job)
    return out


def describe(before: int, after: Sequence[Sequence[str]]) -> str:
    """One line for the sweep's start: how many jobs run, and how many dense duplicates were dropped."""
    dense = sum(1 for job in after if any(o.startswith("hydra.sweep.subdir=") and "dense" in o for o in job))
    dropped = before - len(after)
    return (f"[prunelab] sweep: {len(after)} jobs" + (f" ({dense} dense, once per seed; {dropped} duplicate dense "
            "jobs dropped)" if dropped else ""))


def announce(before: int, after: Sequence[Sequence[str]]) -> None:
    """The sweep's job count, on stdout (stderr is for warnings and the one-line error of a refused sweep)."""
    print(describe(before, after), flush=True)
