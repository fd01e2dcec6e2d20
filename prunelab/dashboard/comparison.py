"""A comparison: the runs of one W&B group (or one sweep directory), what they logged, and what the sweep varied.

The dashboard asks only this object which keys exist, so every panel refers to a key that some run of the
comparison logged (history), holds in its summary, or has in its config. It also splits the runs into
:class:`Cohort` s: W&B groups a panel's runs by one config key (the method), so a panel that took the runs of two
models, two learning rates or two of snip_momentum's alphas would average them into one line.
"""
from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..report.data import Run, label_settings, label_variants, serves
from ..rundir import METHOD_KEYS, under
from ..rundir import flatten as flat_leaves
from ..rundir import with_added_keys
from ..tracking.build import DENSE_JOB_TYPE, run_method
from .runs import EXECUTION_CONFIG, LoggedRun, flatten

#: what runs are grouped by: the method (``rigl``, ``static_erk``, ``snip``), which prunelab adds to the W&B config
#: (a run logged before it has one filled in from its criterion here; W&B's own grouping needs the logged key)
CRITERION = "method"
TYPE = "criterion.criterion_type"   # nested run config keys (W&B addresses them as criterion.value.criterion_type)
TARGET = "schedule.target_sparsity"
SEED = "seed"
STEP = "trainer/step"                     # every row's x-axis
ABLATION = "criterion.ablation"
#: config keys derived from others (never a swept axis of their own)
DERIVED_CONFIG = ("criterion.seed",)
#: the sparsity keys that are not a layer's
OVERALL_SPARSITY = ("sparsity/target", "sparsity/actual", "sparsity/masked")


@dataclass(frozen=True)
class Cohort:
    """Runs that a panel may group by method without averaging runs of different configs: one setting (what the
    runs differ in besides method, target and seed: a model, a learning rate, a distribution swept for every
    criterion, as the offline report's settings), one ablation, one variant of each method whose own options
    differ between its runs (``snip_momentum`` with ``alpha=0.5``; methods without variants join every variant's
    cohort), and the dense baselines that serve that setting."""

    label: str                   #: what the cohort's runs share: ``optimizer.lr=0.1, snip_momentum (alpha=0.5)``
    run_ids: tuple[str, ...]
    keys: tuple[str, ...] = ()   #: the config keys the cohorts differ in (what the label names)
    setting: str = ""            #: the label without the method variant: ``optimizer.lr=0.1``


@dataclass
class Comparison:
    """The runs of one comparison and the facts the dashboard is built from."""

    runs: list[LoggedRun]
    group: str
    project: str
    entity: str
    command: str = ""
    source: str = ""
    #: the runs of a sweep directory, by id (None: every run of the group)
    run_ids: list[str] | None = field(default=None)

    @classmethod
    def from_runs(cls, runs: Sequence[LoggedRun], *, project: str | None = None, entity: str | None = None,
                  command: str = "", source: str = "", by_id: bool = True) -> "Comparison":
        """One comparison from runs that share a group and a project (``project``/``entity`` override theirs)."""
        groups = sorted({r.group for r in runs})
        if len(groups) != 1 or not groups[0]:
            raise ConfigError("sweep", source, f"runs of one W&B group (found groups {groups or 'none'})")
        projects = sorted({r.project for r in runs}) if project is None else [project]
        if len(projects) != 1:
            raise ConfigError("--project", None, f"one of the runs' projects {projects}")
        ent = entity if entity is not None else next((str(v) for r in runs if (v := r.entity or
                                                      r.config_value("logger.entity"))), "")
        for r in runs:  # logged before the method was: its criterion's (or updater's) name, or dense; a dense run
            # logged while its method was its criterion's: dense (its own line at compression 1)
            if r.config_value(CRITERION) is None and r.config_value(TYPE) is not None or \
                    run_method(r.config) == DENSE_JOB_TYPE:
                r.config[CRITERION] = run_method(r.config)
        return cls(list(runs), groups[0], projects[0], ent, command or guess_command(runs), source,
                   [r.id for r in runs] if by_id else None)

    # --- what was logged ---
    @cached_property
    def history(self) -> dict[str, str]:
        """Every history key of any run -> its kind (``number``, ``histogram``, ...)."""
        out: dict[str, str] = {}
        for r in self.runs:
            for k, kind in r.history.items():
                out.setdefault(k, kind)
        return out

    def logs(self, key: str, kind: str = "number") -> bool:
        return self.history.get(key) == kind

    def in_summary(self, key: str) -> bool:
        return any(key in r.summary for r in self.runs)

    def changes(self, key: str) -> bool:
        """Whether some run logged a non-zero value of ``key``."""
        return any(key in r.nonzero for r in self.runs)

    def layers(self) -> list[str]:
        """The pruned layers whose sparsity is logged (``sparsity/<layer>``; not ``sparsity/masked/<layer>``), in
        logging order."""
        return [k[len("sparsity/"):] for k, kind in self.history.items() if k.startswith("sparsity/")
                and not k.startswith("sparsity/masked/") and k not in OVERALL_SPARSITY and kind == "number"]

    def score_keys(self) -> list[str]:
        """The score histograms logged: ``scores/<layer>`` per layer, then ``scores/all``."""
        keys = [k for k, kind in self.history.items() if k.startswith("scores/") and kind == "histogram"]
        return sorted(keys, key=lambda k: k == "scores/all")

    # --- what the sweep varied ---
    @cached_property
    def values(self) -> dict[str, list[Any]]:
        """Flattened config key -> its distinct values over the runs (sorted), for the compared keys."""
        seen: dict[str, list[Any]] = {}
        for r in self.runs:
            flat = flatten({k: v for k, v in r.config.items() if k not in EXECUTION_CONFIG})
            for k, v in flat.items():
                if isinstance(v, dict) or k in DERIVED_CONFIG:
                    continue
                vals = seen.setdefault(k, [])
                if v not in vals:
                    vals.append(v)
        return {k: sorted(v, key=_order) for k, v in seen.items()}

    def varied(self) -> dict[str, list[Any]]:
        """The config keys with more than one value and their values."""
        return {k: v for k, v in self.values.items() if len(v) > 1}

    @cached_property
    def chosen(self) -> dict[str, dict[str, Any]]:
        """The varied keys that each method chooses for itself (:data:`~prunelab.rundir.METHOD_KEYS`: one value in
        all of a method's pruning runs, other values in other methods': rigl's ERK distribution and at_init
        schedule) -> method -> value. They are no axis of the sweep (as in the report); dense runs do not count."""
        keys = [k for k in self.varied() if under(k, METHOD_KEYS)]
        per_method: dict[str, dict[str, set[str]]] = {}
        for r in self.runs:
            target = r.config_value(TARGET)
            if not keys or isinstance(target, (int, float)) and target == 0:
                continue
            flat, method = flatten(r.config), str(r.config_value(CRITERION))
            for k in keys:
                per_method.setdefault(k, {}).setdefault(method, set()).add(str(flat.get(k)))
        out = {}
        for k, methods in per_method.items():
            if all(len(v) == 1 for v in methods.values()) and len(set().union(*methods.values())) > 1:
                out[k] = {m: next(iter(v)) for m, v in sorted(methods.items())}
        return out

    def swept(self) -> dict[str, list[Any]]:
        """The sweep's parameters: the varied keys less those each method chooses for itself (:attr:`chosen`)."""
        return {k: v for k, v in self.varied().items() if k not in self.chosen}

    def axes(self) -> list[str]:
        """The config keys the cohorts differ in (none where the comparison is one cohort)."""
        return sorted({k for c in self.cohorts for k in c.keys})

    @cached_property
    def labelled(self) -> tuple[dict[str, Run], dict[str, dict[str, str]]]:
        """Each run (by id) as the offline report sees it, its setting and variant labelled; the settings' legend
        (``label -> {key: value}``; empty where there is one setting)."""
        runs = {r.id: as_report_run(r) for r in self.runs}
        label_variants(list(runs.values()))
        return runs, label_settings(list(runs.values()))

    @cached_property
    def cohorts(self) -> list[Cohort]:
        """The runs split so that no panel averages runs of different configs (:class:`Cohort`); one cohort of
        every run where nothing but method, target and seed varies."""
        runs, legend = self.labelled
        pruned = [r for r in runs.values() if not r.dense]
        ablations = len({r.config.get(ABLATION) or "none" for r in pruned}) > 1
        cells: dict[tuple[str, str, str], set[str]] = {}  # (setting, ablation, method variant) -> run ids
        for rid, run in runs.items():
            if not run.dense:
                key = (run.setting, str(run.config.get(ABLATION) or "none") if ablations else "", variant_of(run))
                cells.setdefault(key, set()).add(rid)
        for (setting, ablation, variant), ids in list(cells.items()):
            if not variant and any(s == setting and a == ablation and v for s, a, v in cells):
                del cells[(setting, ablation, variant)]  # a method without variants joins every variant's cohort
                for key in [k for k in cells if k[:2] == (setting, ablation)]:
                    cells[key] |= ids
        settings = {r.setting: r.setting_keys for r in pruned}  # as the report's dense baselines find theirs
        served = {rid: serves(r, settings) or [r.setting] for rid, r in runs.items() if r.dense}
        orphans: dict[str, set[str]] = {}  # dense runs of a setting no pruned run has: a cohort of their own
        for rid, labels in served.items():
            if not any(s in labels for s, *_ in cells):
                orphans.setdefault(runs[rid].setting, set()).add(rid)
        if len(cells) + len(orphans) <= 1:
            return [Cohort("", tuple(r.id for r in self.runs))]
        variant_keys = sorted({k for r in pruned for k in r.variant_keys})
        keys = tuple([*sorted({k for keys in legend.values() for k in keys}), *[ABLATION] * ablations,
                      *variant_keys])
        out = []
        for (setting, ablation, variant), ids in sorted(cells.items()):
            members = ids | {rid for rid, labels in served.items() if setting in labels}
            label = [f"{k}={v}" for k, v in legend.get(setting, {}).items()]
            label += [f"{ABLATION}={ablation}"] * bool(ablation)
            out.append(Cohort(", ".join(label + [variant] * bool(variant)),
                              tuple(r.id for r in self.runs if r.id in members), keys, ", ".join(label)))
        for setting, ids in sorted(orphans.items()):
            label = ", ".join(f"{k}={v}" for k, v in legend.get(setting, {}).items())
            out.append(Cohort(f"{label} (dense runs only)".strip(), tuple(r.id for r in self.runs if r.id in ids),
                              keys, label))
        return out

    def series(self, run_id: str) -> str:
        """The run's method with its variant (``snip_momentum (alpha=0.5)``), as the offline report names it."""
        run = self.labelled[0][run_id]
        return "dense" if run.dense else run.criterion.replace(f" [{run.config.get(ABLATION)}]", "")

    def criteria(self) -> list[str]:
        """The methods compared (the dense baseline is none of them)."""
        return [str(c) for c in self.values.get(CRITERION, []) if c != DENSE_JOB_TYPE]

    def targets(self) -> list[float]:
        """The pruning targets (dense baselines, target 0, left out)."""
        return [t for t in self.values.get(TARGET, []) if isinstance(t, (int, float)) and t > 0]

    def seeds(self) -> list[Any]:
        return self.values.get(SEED, [])


def as_report_run(run: LoggedRun) -> Run:
    """A W&B run as the offline report's :class:`~prunelab.report.data.Run` (config flattened to leaves, without
    what W&B and prunelab add for logging), so that settings and variants mean what they mean in the report."""
    config = {k: v for k, v in run.config.items() if k not in EXECUTION_CONFIG and k != CRITERION}
    return Run(path=run.path or Path(run.id), summary=dict(run.summary), config=with_added_keys(flat_leaves(config)),
               status="finished")


def variant_of(run: Run) -> str:
    """``snip_momentum (alpha=0.5)``: the run's variant with its method's name (label_variants), or ""."""
    return f"{run.criterion.split(' ')[0]} ({run.variant})" if run.variant else ""


def _order(x: Any) -> tuple[int, float, str]:
    """Numbers by value, then strings, then anything else (None last)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return (0, float(x), "")
    return (1 if isinstance(x, str) else 2 if x is not None else 3, 0.0, str(x))


def guess_command(runs: Sequence[LoggedRun]) -> str:
    """The command line of the first run that recorded one (``prunelab`` + its arguments)."""
    for r in runs:
        if r.args:
            return shlex.join(["prunelab", *r.args])
    return ""


def sweep_command(sweep_dir: Path) -> str:
    """``prunelab -m <overrides>`` from a Hydra sweep directory's ``multirun.yaml`` ("" if it has none)."""
    path = sweep_dir / "multirun.yaml"
    if not path.exists():
        return ""
    from omegaconf import OmegaConf

    task = OmegaConf.select(OmegaConf.load(path), "hydra.overrides.task", default=None)
    return shlex.join(["prunelab", "-m", *[str(t) for t in task]]) if task is not None else ""
