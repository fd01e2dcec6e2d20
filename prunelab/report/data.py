"""The data side of the offline report: find run directories, load them, aggregate over seeds, compare masks.

Nothing here draws or writes HTML; :mod:`prunelab.report.figures` draws and :mod:`prunelab.report.render` writes.
A run directory is what :class:`prunelab.tracking.local.LocalTracker` and the app leave: ``summary.json``,
``metrics.jsonl``, ``scores.jsonl``, ``masks.pt``, ``config.yaml`` (resolved) and ``.hydra/``.
"""
from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from .. import rundir
from ..rundir import flatten, sparsity_text, under

RUN_MARKERS = ("summary.json", "metrics.jsonl", ".hydra")
DENSE = "dense"  # the series of the dense baseline (target sparsity 0), one run per seed whatever its criterion
# config keys that say how a run was executed or labelled, not what was compared (prefixes of flattened keys):
# the run directory's execution keys (threads, device, logger, progress, checkpoint period, the data path and its
# loader, ...), and how often it was evaluated
EXECUTION_KEYS = (*rundir.EXECUTION_KEYS, "hydra", "trainer.eval_every")
CRITERION_KEYS = ("criterion",)
#: the criterion keys that name a run's series (:attr:`Run.criterion`) rather than tell its variants apart
SERIES_KEYS = ("criterion.criterion_type", "criterion.ablation", "criterion.label")
#: the keys a criterion option may choose for itself: only these can belong to a series rather than split it into
#: settings. A model, dataset, optimizer or training length that differs between criteria always splits them.
METHOD_KEYS = rundir.METHOD_KEYS
TARGET_KEY = "schedule.target_sparsity"
SEED_KEY = "seed"


# ---------------------------------------------------------------------------------------------- one run


@dataclass
class Run:
    """One run directory: its summary, flattened config and status; metrics, scores and masks load lazily."""

    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    status: str
    error: str | None = None
    setting: str = ""  # what distinguishes this run's comparison from others in the report ("" if only one)
    setting_keys: dict[str, str] = field(default_factory=dict, repr=False)  # the config keys its setting compares
    choices: dict[str, str] = field(default_factory=dict, repr=False)  # config group -> option (Hydra's choices)
    variant: str = ""  # the criterion's own options that differ between its runs (``alpha=0.5``), see label_variants
    variant_keys: tuple[str, ...] = field(default=(), repr=False)  # those options' config keys (``criterion.alpha``)
    _masks: Any = field(default=None, repr=False)  # masks.pt, once load_run has read it

    @property
    def criterion(self) -> str:
        """The criterion, with its ablation if any: ``synflow``, ``synflow [shuffle]``. A run whose masks a
        regrowth updater moves (dynamic sparse training: ``criterion=rigl`` / ``set``, random initial masks) is
        named after the updater: ``rigl``, ``set``; a run of a preset that labels its method
        (``criterion.label``), after the label: ``static_erk``, ``gmp``."""
        criterion = self.summary.get("criterion") or self.config.get("criterion.criterion_type") or "unknown"
        name = rundir.method_name({"criterion": {"label": self.config.get("criterion.label"),
                                                 "criterion_type": criterion}, "regrowth": {"name": self.regrowth}})
        ablation = self.summary.get("ablation") or self.config.get("criterion.ablation") or "none"
        name = name if ablation == "none" else f"{name} [{ablation}]"
        return f"{name} ({self.variant})" if self.variant else name

    @property
    def regrowth(self) -> str | None:
        """The regrowth updater that moves this run's masks (``rigl``, ``set``), or None."""
        name = self.config.get("regrowth.name")
        return str(name) if name not in (None, "none") else None

    @property
    def dense(self) -> bool:
        """A dense run: target sparsity 0 (nothing pruned, whatever its criterion), or flagged so by the app."""
        return bool(self.summary.get("dense")) or self.target == 0.0

    @property
    def series(self) -> str:
        """The label of this run's line in plots and row in tables: the criterion (``dense`` for a dense run),
        and the setting if there are several."""
        label = DENSE if self.dense else self.criterion
        return f"{label} [{self.setting}]" if self.setting else label

    @property
    def target(self) -> float | None:
        value = self.config.get(TARGET_KEY, self.summary.get("sparsity/target"))
        return _float_or_none(value)

    @property
    def seed(self) -> int | None:
        value = self.config.get(SEED_KEY, self.summary.get("seed"))
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def name(self) -> str:
        if self.summary.get("name"):
            return str(self.summary["name"])
        if self.dense and self.seed is not None:
            return f"dense-seed{self.seed}"
        if self.target is not None and self.seed is not None:
            return f"{self.criterion}-s{sparsity_text(self.target)}-seed{self.seed}"
        return self.path.name

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    @property
    def test_acc(self) -> float:
        return float(self.summary["test/acc"])

    @property
    def val_acc(self) -> float:
        """The final validation accuracy (nan for a run without a validation split: ``dataset.val_fraction=0``)."""
        value = _float_or_none(self.summary.get("val/acc"))
        return math.nan if value is None else value

    @property
    def actual(self) -> float:
        """The final actual sparsity of the pruned layers (the target when the summary lacks it)."""
        value = _float_or_none(self.summary.get("sparsity/actual"))
        return value if value is not None else float(self.target or 0.0)

    @property
    def masked(self) -> float:
        """The final fraction of the pruned layers' weights that the masks remove (``actual`` when not logged)."""
        value = _float_or_none(self.summary.get("sparsity/masked"))
        return value if value is not None else self.actual

    @cached_property
    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "metrics.jsonl")

    @cached_property
    def scores(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path / "scores.jsonl")

    def masks(self) -> dict[str, Any] | None:
        """The final bool masks by layer name (True = kept), or None when ``masks.pt`` is missing."""
        if getattr(self, "_masks", None) is not None:
            return self._masks
        path = self.path / "masks.pt"
        if not path.exists():
            return None
        import torch

        return torch.load(path, map_location="cpu", weights_only=True)


def _float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a ``.jsonl`` file, one per line; a torn last line (a run killed mid-write) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's flattened config: the resolved ``config.yaml``, else Hydra's ``.hydra/config.yaml``, else {}."""
    import yaml

    for path in (run_dir / "config.yaml", run_dir / ".hydra" / "config.yaml"):
        if path.exists():
            try:
                return flatten(yaml.safe_load(path.read_bytes().decode("utf-8")) or {})
            except (OSError, ValueError, yaml.YAMLError):
                continue
    return {}


def read_choices(run_dir: Path) -> dict[str, str]:
    """The option of each config group the run was composed from (``schedule -> at_init``): Hydra's
    ``runtime.choices`` in ``.hydra/hydra.yaml``, without Hydra's own groups; {} without a readable file."""
    import yaml

    try:
        hydra = yaml.load((run_dir / ".hydra" / "hydra.yaml").read_bytes(), Loader=getattr(yaml, "CSafeLoader",
                                                                                           yaml.SafeLoader))
        choices = hydra.get("hydra", hydra)["runtime"]["choices"]  # the hydra node, at the top or under "hydra"
    except (OSError, ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError):
        return {}
    if not isinstance(choices, dict):
        return {}
    return {str(g): str(c) for g, c in choices.items() if "/" not in str(g) and c is not None}


def config_from_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """A partial config from the summary's fields, for a run directory without a config file."""
    keys = {"criterion": "criterion.criterion_type", "model": "model.name", "dataset": "dataset.name",
            "pattern": "pattern.type", "scope": "pattern.scope", "seed": SEED_KEY, "sparsity/target": TARGET_KEY}
    return {name: summary[key] for key, name in keys.items() if key in summary}


def load_run(run_dir: Path) -> Run:
    """Read one run directory; never raises for a broken run: it comes back with status failed, unfinished,
    killed or ``unreadable`` (a file that cannot be read: a summary that is not a JSON object, a record that is
    not JSON, masks that torch cannot load), with the reason as its error."""
    state = rundir.inspect(run_dir)
    summary = state.summary or {}
    status = state.observed if state.observed not in ("empty",) else "unfinished"
    error = summary.get("error") if isinstance(summary.get("error"), str) else None
    if state.summary_problem:
        status, error = "unreadable", state.summary_problem
    elif state.observed == "finished" and not state.describes():  # never compared under another run's config
        status, error = "unreadable", f"{rundir.CONFIG} is not the config of the run recorded there (edited, or " \
            "copied from another run)"
    config = rundir.with_added_keys(read_config(run_dir) or config_from_summary(summary))
    run = Run(run_dir, summary, config, status, error, choices=read_choices(run_dir))
    problem = check_files(run)
    if problem:
        run.status, run.error = "unreadable", problem
    elif run.status == "finished" and _float_or_none(summary.get("test/acc")) is None:
        run.status, run.error = "incomplete", "summary.json says finished but has no test/acc"
    if run.status != "finished" and not run.error:
        run.error = unfinished_reason(run)
    return run


def check_files(run: Run) -> str | None:
    """Read the run's records and masks once, strictly (they are kept on the run): the reason the first
    unreadable one cannot be read, or None. A torn last line (a run killed while writing it) is not a fault."""
    for name, check in (("metrics.jsonl", _check_metric), ("scores.jsonl", _check_score)):
        records, problem = read_records(run.path / name, check)
        if problem:
            return problem
        run.__dict__[name.split(".")[0]] = records  # the cached_property's value
    path = run.path / "masks.pt"
    if path.exists():
        import torch

        try:
            masks = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any failure to load is a reason to list, not to stop
            return f"masks.pt is unreadable ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})"
        if not isinstance(masks, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                  for k, v in masks.items()):
            return "masks.pt holds no dict of layer name -> mask tensor"
        run._masks = masks
    return None


def read_records(path: Path, check: Callable[[dict[str, Any]], str | None]) -> tuple[list[dict[str, Any]], str | None]:
    """``(records, None)`` of a ``.jsonl`` file whose every line is a JSON object passing ``check``, or
    ``([], reason)``. The last line may be torn (a kill mid-write): it is skipped."""
    if not path.exists():
        return [], None
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], f"{path.name} is not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r})"
    except OSError as exc:
        return [], f"{path.name} cannot be read ({exc.strerror})"
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            if i == len(lines) and not text.endswith("\n"):
                break  # torn by a kill
            return [], f"{path.name} line {i} is not JSON"
        why = check(rec) if isinstance(rec, dict) else "not a JSON object"
        if why:
            return [], f"{path.name} line {i}: {why}"
        out.append(rec)
    return out, None


def _check_metric(rec: dict[str, Any]) -> str | None:
    if not isinstance(rec.get("step"), int) or isinstance(rec.get("step"), bool):
        return "no integer step"
    bad = [k for k, v in rec.items() if not (v is None or isinstance(v, (int, float)))]
    return f"{bad[0]} is not a number" if bad else None


def _check_score(rec: dict[str, Any]) -> str | None:
    if not isinstance(rec.get("step"), int) or not isinstance(rec.get("layer"), str):
        return "no integer step and layer name"
    counts, edges = rec.get("counts"), rec.get("edges")
    if not (isinstance(counts, list) and isinstance(edges, list) and len(edges) == len(counts) + 1
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in counts + edges)):
        return "counts and edges are not a histogram (numbers; one more edge than counts)"
    return None


def unfinished_reason(run: Run) -> str:
    """Why a run without an error message has no result: what is missing and the last step it logged."""
    steps = [int(m["step"]) for m in run.metrics if isinstance(m.get("step"), (int, float))]
    where = f"last logged step {max(steps)}" if steps else "no step logged"
    if not (run.path / "summary.json").exists():
        return f"no summary.json: still running, killed, or stopped before the end ({where})"
    return f"status {run.status!r} without an error message ({where})"


def find_run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Every folder under ``roots`` (the roots included) holding summary.json, metrics.jsonl or .hydra.

    Hidden folders (``.hydra`` itself) are not searched, nor are the insides of a run directory.
    """
    found: dict[Path, None] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            if any(m in filenames or m in dirnames for m in RUN_MARKERS):
                found[Path(dirpath).resolve()] = None
                dirnames[:] = []
                continue
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return list(found)


def load_runs(roots: Iterable[Path]) -> list[Run]:
    """All runs under ``roots``, with their comparison settings labelled (see :func:`label_settings`)."""
    runs = [load_run(d) for d in find_run_dirs(roots)]
    label_variants(runs)
    label_settings(runs)
    return sorted(runs, key=lambda r: (r.series, r.target if r.target is not None else -1.0, r.seed or 0, str(r.path)))


# ---------------------------------------------------------------------------------------------- settings


def label_variants(runs: list[Run]) -> None:
    """Name each criterion's runs by the criterion's own options that differ between its finished pruned runs
    (``snip_momentum (alpha=0.5)`` and ``snip_momentum (alpha=0.99)``): two methods, compared with each other and
    with every other criterion, never one series averaged over both. Keys that name the series (type, ablation,
    label), execution keys and keys equal to the seed (``criterion.seed: ${seed}``) do not count."""
    by_method: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        if not run.dense:
            by_method[run.criterion].append(run)
    for method_runs in by_method.values():
        members = [r for r in method_runs if r.finished]
        names = sorted({k for r in members for k in r.config if under(k, CRITERION_KEYS)
                        and not under(k, (*SERIES_KEYS, *EXECUTION_KEYS))})
        values = {n: [json.dumps(r.config.get(n), sort_keys=True, default=str) for r in members] for n in names}
        differ = [n for n in names if len(set(values[n])) > 1
                  and not all(v == json.dumps(r.seed) for v, r in zip(values[n], members))]
        for run in method_runs if differ else ():
            run.variant_keys = tuple(differ)
            run.variant = ", ".join(f"{n.split('.', 1)[1]}={_short(json.dumps(run.config.get(n), default=str))}"
                                    for n in differ)


def comparable_key(config: dict[str, Any], drop: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The config as a hashable key, without execution details and without the keys under ``drop`` prefixes."""
    prefixes = tuple(EXECUTION_KEYS) + tuple(drop)
    return tuple(sorted((k, json.dumps(v, sort_keys=True, default=str)) for k, v in config.items()
                        if not under(k, prefixes)))


def label_settings(runs: list[Run]) -> dict[str, dict[str, str]]:
    """Give each run a ``setting`` label naming what (other than criterion, target sparsity and seed) differs
    between the finished runs, so lines of different models or patterns never mix: ``key=value`` for up to two
    differing config keys (``group=option`` for a group's keys its option tells apart, :func:`named_by_choice`),
    else ``setting N``. One setting: label "". Returns ``label -> {key: value}`` (options and keys).

    A key that has one value within every series (criterion, or the dense baseline) and differs between them is
    part of the series, not a setting: what a criterion option chooses for itself (wanda's ``per_row``
    distribution; rigl's and set's ERK split, regrowth and at_init schedule; a gradual arm's window), so such
    arms are compared with each other as criteria are."""
    drop = (*CRITERION_KEYS, TARGET_KEY, SEED_KEY)
    keys = {id(r): dict(comparable_key(r.config, drop)) for r in runs}
    for name in seed_keys(runs, keys) + series_keys(runs, keys):
        for k in keys.values():
            k.pop(name, None)
    for run in runs:
        run.setting_keys = keys[id(run)]
    done = [keys[id(r)] for r in runs if r.finished]
    setting_of = {id(r): tuple(sorted(keys[id(r)].items())) for r in runs}  # each run's setting, as a key
    distinct = sorted({setting_of[id(r)] for r in runs if r.finished})
    if len(distinct) <= 1:
        return {}
    varying = [n for n in sorted(set().union(*done)) if len({k.get(n) for k in done}) > 1]
    varying = [n for n in varying if not follows_choice(n, varying, done)]
    finished = [r for r in runs if r.finished]
    named = named_by_choice(varying, finished, keys)
    legend: dict[str, dict[str, str]] = {}
    width = len(str(len(distinct)))  # "setting 02" before "setting 10", wherever labels are sorted as text
    # the legend names each varying group's option wherever every finished run records it, named or not
    recorded = sorted(g for g in {n.split(".")[0] for n in varying} if all(g in r.choices for r in finished))
    for i, key in enumerate(distinct):
        diff = {n: _short(dict(key).get(n, "-")) for n in varying}
        chose = [r.choices for r in finished if setting_of[id(r)] == key]
        options = {g: "/".join(sorted({c[g] for c in chose})) for g in recorded}
        shown = dict(sorted({**{g: options[g] for g in named},
                             **{n: v for n, v in diff.items() if not any(n in ns for ns in named.values())}}.items()))
        label = ", ".join(f"{n}={v}" for n, v in shown.items()) if len(shown) <= 2 else f"setting {i + 1:0{width}d}"
        legend[label] = {**options, **diff}
        for run in runs:
            if setting_of[id(run)] == key:
                run.setting = label
    return legend


def named_by_choice(varying: Sequence[str], finished: Sequence[Run],
                    keys: dict[int, dict[str, str]]) -> dict[str, list[str]]:
    """Config group -> its keys among ``varying``, for each group whose option (``schedule=at_init``) tells the
    finished runs' values of those keys apart one to one: the label then names the option, not the keys
    (``schedule=at_init``, not ``schedule.end=0.0, schedule.start=0.0``). A group chosen the same way with keys
    overridden differently, or a run without Hydra's record, keeps the keys."""
    out = {}
    for group in sorted({n.split(".")[0] for n in varying}):
        names = [n for n in varying if n.split(".")[0] == group]
        pairs = {(r.choices.get(group), tuple(keys[id(r)].get(n) for n in names)) for r in finished}
        options = {c for c, _ in pairs}
        if None in options or not len(pairs) == len(options) == len({v for _, v in pairs}):
            continue
        # and each option's keys are the option's own (no override such as schedule=oneshot schedule.end=0.7)
        composed = {c: option_config(group, c) for c in options}
        if all(composed[c] is not None and all(composed[c].get(n) == v for n, v in zip(names, values))
               for c, values in pairs):
            out[group] = names
    return out


@cache
def option_config(group: str, option: str) -> dict[str, str] | None:
    """The keys under ``group`` as ``group=option`` composes them (every other group at its default), their values
    written as :func:`comparable_key` writes them; None where this prunelab cannot compose that option."""
    try:
        from hydra import compose, initialize_config_module
        from omegaconf import OmegaConf

        from .. import config as _config  # noqa: F401 - the schemas and resolvers the config needs

        with initialize_config_module("prunelab.conf", version_base=None):
            cfg = compose("config", overrides=[f"{group}={option}"])
            node = OmegaConf.to_container(cfg, resolve=True).get(group)
    except Exception:  # noqa: BLE001 - an option this version does not have, or Hydra already in use: keys, then
        return None
    return {k: json.dumps(v, sort_keys=True, default=str) for k, v in flatten(node, group).items()}


def follows_choice(name: str, varying: Sequence[str], done: Sequence[dict[str, str]]) -> bool:
    """Whether key ``name`` (``model.head``) differs only because a group's choice does (``model.name`` varies and
    every run with the same model has the same head): the label then names the choice alone, so that a sweep of
    models x distributions reads ``distribution.name=erk, model.name=lenet5``, not ``setting 3``."""
    for choice in varying:
        group = choice[: -len("name")]
        if choice != name and choice.endswith(".name") and name.startswith(group):
            values: dict[str | None, set[str | None]] = {}
            for k in done:
                values.setdefault(k.get(choice), set()).add(k.get(name))
            if all(len(v) == 1 for v in values.values()):
                return True
    return False


def seed_keys(runs: list[Run], keys: dict[int, dict[str, str]]) -> list[str]:
    """The config keys that equal the run's seed wherever they are set (``regrowth.seed: ${seed}``): they vary
    with the seed, as ``seed`` itself, and say nothing about the setting."""
    values: dict[str, set[bool]] = {}
    for run in runs:
        seed = json.dumps(run.seed)
        for name, value in keys[id(run)].items():
            values.setdefault(name, set()).add(value == seed)
    return [name for name, same in values.items() if same == {True}]


def series_keys(runs: list[Run], keys: dict[int, dict[str, str]]) -> list[str]:
    """The config keys a method may choose (:data:`METHOD_KEYS`) that are constant within each series of the
    finished runs and differ between series; dense runs' values count only where they matter (:func:`dense_inert`)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.finished:
            groups.setdefault(DENSE if run.dense else run.criterion, []).append(run)
    if len(groups) < 2:
        return []
    names = sorted(n for n in set().union(*(keys[id(r)] for rs in groups.values() for r in rs))
                   if under(n, METHOD_KEYS))
    out = []
    for name in names:
        # a dense run's value of a key it does not depend on constrains nothing: two sweeps' dense runs (at-init and
        # gradual) are one baseline, and the schedules stay the two criteria's own
        per_group = [{keys[id(r)].get(name) for r in rs if not dense_inert(r, name)} for rs in groups.values()]
        every = {keys[id(r)].get(name) for rs in groups.values() for r in rs}
        if all(len(v) <= 1 for v in per_group) and len(every) > 1:
            out.append(name)
    return out


def dense_inert(run: Run, name: str) -> bool:
    """Whether ``run`` is dense and its weights do not depend on config key ``name``: a method or pattern key
    (target 0 prunes and regrows nothing, whatever the schedule, distribution, regrowth or pattern), unless
    ``trainer.finetune_steps`` lets the schedule's end set the training length."""
    if not run.dense or not under(name, (*METHOD_KEYS, "pattern")):
        return False
    return not (under(name, ("schedule",)) and run.config.get("trainer.finetune_steps") is not None)


def _short(value: str) -> str:
    return value.strip('"')[:40]


def split_duplicates(runs: Sequence[Run]) -> tuple[list[Run], list[Run]]:
    """``(kept, superseded)``: of finished runs with the same config (criterion, target and seed included), only
    the newest (by summary.json time) is kept, so a repeated sweep does not count its seeds twice. Dense runs
    are compared without their criterion: a sweep that trained the dense model once per criterion (before the
    sweeper ran it once per seed) counts it once per seed."""
    newest: dict[tuple, Run] = {}
    for run in finished_runs(runs):
        key = comparable_key(run.config, CRITERION_KEYS if run.dense else ())
        old = newest.get(key)
        if old is None or _mtime(run) > _mtime(old):
            newest[key] = run
    kept_ids = {id(r) for r in newest.values()}
    kept = [r for r in runs if not r.finished or id(r) in kept_ids]
    return kept, [r for r in runs if r.finished and id(r) not in kept_ids]


def _mtime(run: Run) -> float:
    path = run.path / "summary.json"
    return path.stat().st_mtime if path.exists() else 0.0


def shared_config(runs: Sequence[Run]) -> dict[str, Any]:
    """The config entries (without execution details) that all the given runs share."""
    if not runs:
        return {}
    common = {k: v for k, v in runs[0].config.items() if not under(k, EXECUTION_KEYS)}
    for run in runs[1:]:
        common = {k: v for k, v in common.items() if k in run.config and run.config[k] == v}
    return common


# ---------------------------------------------------------------------------------------------- aggregation


@dataclass
class Stat:
    """Values of one quantity over seeds: mean, sample standard deviation (ddof=1; nan for one value), n."""

    values: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else math.nan


def finished_runs(runs: Iterable[Run]) -> list[Run]:
    return [r for r in runs if r.finished and r.target is not None]


def aggregate(runs: Iterable[Run], value: Callable[[Run], float]) -> dict[tuple[str, float], Stat]:
    """``(series, target) -> Stat`` of ``value(run)`` over the finished runs (seeds) of each cell."""
    cells: dict[tuple[str, float], Stat] = defaultdict(Stat)
    for run in finished_runs(runs):
        cells[(run.series, float(run.target))].values.append(value(run))  # type: ignore[arg-type]
    return dict(sorted(cells.items()))


def dense_baselines(runs: Iterable[Run]) -> dict[str, Stat]:
    """``setting -> Stat`` of the test accuracy of the dense runs, one value per seed (:func:`dense_seeds`), so n is
    the number of seeds."""
    return {setting: Stat([v for _, v in sorted(seeds.items(), key=lambda kv: str(kv[0]))])
            for setting, seeds in dense_seeds(runs).items()}


def dense_seeds(runs: Iterable[Run]) -> dict[str, dict[Any, float]]:
    """``setting -> seed -> test accuracy`` of the dense runs (the mean where a seed has several dense runs left,
    e.g. runs of different configs merged by hand; a run without a seed is keyed by its path). A dense run is the
    baseline of every setting of pruned runs it differs from only in keys it does not depend on (an at-init and a
    gradual setting share the dense run of either sweep; :func:`dense_inert`), else of its own setting."""
    done = finished_runs(runs)
    settings = {r.setting: r.setting_keys for r in done if not r.dense}
    by_seed: dict[str, dict[Any, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in done:
        if run.dense:
            for setting in serves(run, settings) or [run.setting]:
                by_seed[setting][run.seed if run.seed is not None else str(run.path)].append(run.test_acc)
    return {setting: {seed: statistics.fmean(v) for seed, v in seeds.items()} for setting, seeds in
            sorted(by_seed.items())}


def shared_baselines(baselines: dict[str, Stat]) -> dict[str, Stat]:
    """The same dense runs serving several settings once, labelled with all of them (``schedule=at_init;
    schedule=oneshot``: a label may itself hold commas): one line in the figure and one figure in the text, not
    one per setting."""
    groups: dict[tuple[float, ...], list[str]] = {}
    for setting, stat in baselines.items():
        groups.setdefault(tuple(stat.values), []).append(setting)
    return {"; ".join(settings): baselines[settings[0]] for settings in groups.values()}


def serves(dense: Run, settings: dict[str, dict[str, str]]) -> list[str]:
    """The settings (``label -> keys``) whose keys equal the dense run's on every key the dense run depends on."""
    own = dense.setting_keys
    return [label for label, keys in settings.items()
            if all(keys.get(n) == own.get(n) for n in set(keys) | set(own) if not dense_inert(dense, n))]


def pruned_runs(runs: Iterable[Run]) -> list[Run]:
    """The finished runs that prune (target sparsity > 0)."""
    return [r for r in finished_runs(runs) if not r.dense]


def seed_table(runs: Iterable[Run]) -> dict[str, dict[str, dict[float, dict[int, float]]]]:
    """``setting -> criterion -> target -> seed -> test accuracy`` of the pruned runs (what the paired
    statistics of :mod:`prunelab.report.stats` compare); a repeated cell keeps the mean."""
    cells: dict[tuple[str, str, float, int], list[float]] = defaultdict(list)
    for run in pruned_runs(runs):
        if run.seed is not None:
            cells[(run.setting, run.criterion, float(run.target), run.seed)].append(run.test_acc)  # type: ignore[arg-type]
    out: dict[str, dict[str, dict[float, dict[int, float]]]] = {}
    for (setting, criterion, target, seed), values in sorted(cells.items()):
        out.setdefault(setting, {}).setdefault(criterion, {}).setdefault(target, {})[seed] = statistics.fmean(values)
    return out


def layer_sparsity(runs: Iterable[Run]) -> dict[tuple[str, float, str], Stat]:
    """``(series, target, layer) -> Stat`` of the final per-layer sparsity (summary ``sparsity/layers``)."""
    cells: dict[tuple[str, float, str], Stat] = defaultdict(Stat)
    for run in finished_runs(runs):
        for layer, value in (run.summary.get("sparsity/layers") or {}).items():
            cells[(run.series, float(run.target), layer)].values.append(float(value))  # type: ignore[arg-type]
    return dict(cells)


@dataclass
class MaskedGap:
    """Where zeros in the weights (``sparsity/actual``) exceed what the masks remove (``sparsity/masked``): kept
    weights that are exactly 0, e.g. just regrown at value 0. ``largest``: the largest gap at any logged step of
    any seed; ``final``: the mean gap at the end; ``steps``: how many logged steps had a gap."""

    largest: float
    final: float
    steps: int


def masked_gaps(runs: Iterable[Run], tolerance: float = 1e-9) -> dict[tuple[str, float], MaskedGap]:
    """``(series, target) -> MaskedGap`` for the cells of pruned runs whose actual and masked sparsity differ at
    some logged step (cells where they never differ are left out)."""
    out: dict[tuple[str, float], MaskedGap] = {}
    for series, by_target in by_series_and_target(pruned_runs(runs)).items():
        for target, cell in by_target.items():
            gaps = [float(m["sparsity/actual"]) - float(m["sparsity/masked"]) for r in cell for m in r.metrics
                    if _float_or_none(m.get("sparsity/actual")) is not None
                    and _float_or_none(m.get("sparsity/masked")) is not None]
            steps = sum(abs(g) > tolerance for g in gaps)
            if steps:
                final = statistics.fmean(r.actual - r.masked for r in cell)
                out[(series, target)] = MaskedGap(max(gaps, key=abs), final, steps)
    return out


def mean_curve(runs: Sequence[Run], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and the mean over ``runs`` of metric ``key`` at each step some run logged it."""
    by_step: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for rec in run.metrics:
            value = _float_or_none(rec.get(key))
            if value is not None and "step" in rec:
                by_step[int(rec["step"])].append(value)
    steps = sorted(by_step)
    return np.array(steps, dtype=float), np.array([statistics.fmean(by_step[s]) for s in steps])


def by_series_and_target(runs: Iterable[Run]) -> dict[str, dict[float, list[Run]]]:
    """Finished runs grouped as ``series -> target -> runs`` (the seeds)."""
    out: dict[str, dict[float, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in finished_runs(runs):
        out[run.series][float(run.target)].append(run)  # type: ignore[arg-type]
    return {s: dict(sorted(t.items())) for s, t in sorted(out.items())}


# ---------------------------------------------------------------------------------------------- score histograms


def rebin(counts: Sequence[float], edges: Sequence[float], new_edges: np.ndarray) -> np.ndarray:
    """Counts of a histogram moved onto other bin edges, each bin's count spread evenly over its width.

    Interpolates the cumulative count at ``new_edges``; counts outside the new range are clipped into the outer
    bins so the total is kept when ``new_edges`` spans the old ones.
    """
    counts = np.asarray(counts, dtype=float)
    edges = np.asarray(edges, dtype=float)
    cdf = np.concatenate([[0.0], np.cumsum(counts)])
    at = np.interp(np.clip(new_edges, edges[0], edges[-1]), edges, cdf)
    at[0], at[-1] = 0.0, cdf[-1]
    return np.diff(at)


@dataclass
class ScoreHeatmap:
    """One layer's score distribution over steps on a common grid: ``fraction[bin, step]`` of the layer's weights
    (zeros excluded; they are in ``zeros``), bins ``edges`` (log10 units when ``log_scale``)."""

    steps: np.ndarray
    edges: np.ndarray
    fraction: np.ndarray
    zeros: np.ndarray
    log_scale: bool


def score_layers(run: Run) -> list[str]:
    """The layers a run logged score histograms for, ``all`` first."""
    layers = list(dict.fromkeys(str(r["layer"]) for r in run.scores if "layer" in r))
    return sorted(layers, key=lambda name: name != "all")


def score_heatmap(run: Run, layer: str, bins: int = 64) -> ScoreHeatmap | None:
    """The heatmap of ``layer``'s histograms over the run's logged steps (the last record wins per step)."""
    records = {int(r["step"]): r for r in run.scores if r.get("layer") == layer and r.get("counts")}
    if not records:
        return None
    steps = sorted(records)
    lo = min(float(records[s]["edges"][0]) for s in steps)
    hi = max(float(records[s]["edges"][-1]) for s in steps)
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    fraction = np.zeros((bins, len(steps)))
    zeros = np.zeros(len(steps))
    for j, step in enumerate(steps):
        rec = records[step]
        numel = max(int(rec.get("numel") or sum(rec["counts"]) + int(rec.get("zeros", 0))), 1)
        fraction[:, j] = rebin(rec["counts"], rec["edges"], edges) / numel
        zeros[j] = int(rec.get("zeros", 0)) / numel
    return ScoreHeatmap(np.array(steps), edges, fraction, zeros, bool(records[steps[-1]].get("log_scale", True)))


def score_run(runs: Sequence[Run]) -> Run | None:
    """The run whose score histograms represent a series: the highest target sparsity, then the lowest seed."""
    candidates = [r for r in runs if r.scores]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (-(r.target or 0.0), r.seed or 0, str(r.path)))


# ---------------------------------------------------------------------------------------------- mask overlap


def jaccard(a: Any, b: Any) -> float:
    """|A and B| / |A or B| of two bool tensors of kept weights (1.0 when both keep nothing)."""
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def mask_jaccards(masks_a: dict[str, Any], masks_b: dict[str, Any]) -> dict[str, float]:
    """Per-layer Jaccard index of two runs' kept weights, and ``all`` over every shared layer together."""
    import torch

    layers = [n for n in masks_a if n in masks_b and masks_a[n].shape == masks_b[n].shape]
    out = {n: jaccard(masks_a[n].bool(), masks_b[n].bool()) for n in layers}
    if layers:
        out["all"] = jaccard(torch.cat([masks_a[n].reshape(-1).bool() for n in layers]),
                             torch.cat([masks_b[n].reshape(-1).bool() for n in layers]))
    return out


def criterion_groups(runs: Iterable[Run]) -> list[dict[str, Run]]:
    """Groups of finished, pruned runs that differ only in their criterion (the same setting, target and seed:
    same model, dataset, pattern, scope, schedule...; what a criterion option sets for itself, such as rigl's
    regrowth and at_init schedule, counts as the criterion, see :func:`label_settings`), as ``criterion -> run``;
    the first run (by path) wins if a criterion repeats. Only groups with two or more criteria."""
    groups: dict[tuple, dict[str, Run]] = defaultdict(dict)
    for run in sorted(finished_runs(runs), key=lambda r: str(r.path)):
        if run.target and (run.path / "masks.pt").exists():
            groups[(run.setting, float(run.target), run.seed)].setdefault(run.criterion, run)
    return [g for g in groups.values() if len(g) > 1]


@dataclass
class Agreement:
    """Mean Jaccard index between criteria for one (setting, target) over the matching groups (seeds):
    ``values[layer][(a, b)]`` is a Stat for every ordered pair of criteria that met."""

    setting: str
    target: float
    criteria: list[str]
    values: dict[str, dict[tuple[str, str], Stat]]

    def matrix(self, layer: str) -> np.ndarray:
        """The criterion x criterion matrix of mean Jaccard (diagonal 1, nan where two never met)."""
        n = len(self.criteria)
        out = np.full((n, n), np.nan)
        for i, a in enumerate(self.criteria):
            for j, b in enumerate(self.criteria):
                out[i, j] = 1.0 if a == b else self.values[layer].get((a, b), Stat()).mean
        return out


def agreements(runs: Iterable[Run]) -> list[Agreement]:
    """The criterion agreement matrices, one per (setting, target sparsity), averaged over groups (seeds)."""
    acc: dict[tuple[str, float], dict[str, dict[tuple[str, str], Stat]]] = {}
    names: dict[tuple[str, float], set[str]] = defaultdict(set)
    for group in criterion_groups(runs):
        first = next(iter(group.values()))
        key = (first.setting, float(first.target))  # type: ignore[arg-type]
        masks = {c: r.masks() for c, r in group.items()}
        layers = acc.setdefault(key, defaultdict(lambda: defaultdict(Stat)))
        for a, b in combinations(sorted(masks), 2):
            for layer, value in mask_jaccards(masks[a], masks[b]).items():
                layers[layer][(a, b)].values.append(value)
                layers[layer][(b, a)].values.append(value)
            names[key].update((a, b))
    return [Agreement(s, t, sorted(names[(s, t)]), {k: dict(v) for k, v in acc[(s, t)].items()})
            for s, t in sorted(acc)]


def random_jaccard(density: float) -> float:
    """The expected Jaccard index of two independent random masks that each keep a fraction ``density``."""
    return density / (2.0 - density) if density < 2.0 else 1.0
