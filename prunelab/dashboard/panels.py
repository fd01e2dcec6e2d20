"""The dashboard's sections: for each, its panels in the workspace and its panel grids in the report.

W&B's model decides the split. A workspace has one run set, so its panels cannot filter runs: they group them
(by the method, the run config key ``method``: the criterion, the updater or the preset's label, ``dense`` for
the dense baselines; W&B aggregates each group's runs: mean, with a band of one standard deviation). A report's panel grid has a run set of its own, so the report repeats a
section's panels per cohort (:class:`~.comparison.Cohort`: one setting, ablation and method variant, so that no
line averages runs of different configs) and target sparsity, or per criterion (score histograms: W&B draws
one run's histograms per panel, so each criterion's grid holds one run).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import wandb_workspaces.reports.v2 as wr
from wandb_workspaces import expr

from .comparison import CRITERION, SEED, STEP, TARGET, Cohort, Comparison

Panel = Any  # a wandb_workspaces.reports.v2 panel


@dataclass
class Grid:
    """One report panel grid: a label (None: the whole comparison), the filters that narrow its run set, and the
    run-set grouping (config keys)."""

    label: str | None
    filters: list[Any]
    panels: list[Panel]
    groupby: list[str] = field(default_factory=lambda: [CRITERION])


@dataclass
class Part:
    """One section of the dashboard: a workspace section and a report heading with text and panel grids."""

    name: str
    text: str
    panels: list[Panel]
    grids: list[Grid]
    note: str = ""  # what the workspace's panels show that the report's grids split (in the section's text panel)


#: the note of the sections that the report splits per target
PER_TARGET_NOTE = (" Here the panels take every run the runs table shows: filter it by schedule.target_sparsity "
                   "to compare the criteria at one target (the report has one grid per target).")


def line(y: str | list[str], title: str, x: str = STEP, groupby: str | None = CRITERION, **kw: Any) -> Panel:
    """A line plot of history keys, runs grouped by a config key (mean, band = one standard deviation)."""
    grouped = dict(groupby=wr.Config(groupby), groupby_aggfunc="mean", groupby_rangefunc="stddev") if groupby else {}
    return wr.LinePlot(title=title, x=x, y=[y] if isinstance(y, str) else list(y), smoothing_type="none",
                       **grouped, **kw)


def within(comp: Comparison, cohort: Cohort) -> list[Any]:
    """The filter that narrows a run set to ``cohort`` (none where the comparison is one cohort)."""
    return [expr.Metric("ID").isin(list(cohort.run_ids))] if len(comp.cohorts) > 1 else []


def labelled(cohort: Cohort, text: str) -> str:
    return f"{cohort.label}: {text}" if cohort.label else text


def per_target(comp: Comparison, panels: Callable[[], list[Panel]]) -> list[Grid]:
    """One grid per cohort and pruning target, grouped by criterion (dense baselines left out); one grid per
    cohort if the sweep prunes nothing."""
    targets = comp.targets()
    grids = []
    for cohort in comp.cohorts:
        ids = set(cohort.run_ids)
        held = [t for t in targets if any(r.id in ids and r.config_value(TARGET) == t for r in comp.runs)]
        grids += [Grid(labelled(cohort, f"target sparsity {t:g}"), [*within(comp, cohort), expr.Config(TARGET) == t],
                       panels()) for t in held] or [Grid(cohort.label or None, within(comp, cohort), panels())]
    return grids


def comparison(comp: Comparison) -> Part | None:
    """Final test accuracy vs compression by criterion (mean ± std over seeds), and per varied axis."""
    curve = comp.logs("test/acc") and comp.logs("compression")
    scatter = comp.in_summary("test/acc") and comp.in_summary("compression")
    if not (curve or scatter):
        return None

    def acc_vs_compression(groupby: str = CRITERION) -> Panel:
        return line("test/acc", f"test accuracy vs compression, by {groupby} (mean ± std over seeds)",
                    x="compression", groupby=groupby, log_x=True, title_x="compression = 1 / (1 - sparsity)",
                    title_y="test/acc")

    def main() -> list[Panel]:
        out = [acc_vs_compression()] if curve else []
        if scatter:
            out.append(wr.ScatterPlot(title="test accuracy vs compression, one point per run",
                                      x=wr.SummaryMetric("compression"), y=wr.SummaryMetric("test/acc"), log_x=True))
        return out

    panels = main() + ([acc_vs_compression(a) for a in comp.axes()] if curve else [])
    grids = [Grid(c.label or None, within(comp, c), main()) for c in comp.cohorts]
    axes = (f" The sweep varies {', '.join(comp.axes())} besides the criterion, target and seed: one comparison "
            "per combination follows, each with the dense baselines that serve it." if comp.axes() else "")
    text = ("Final test accuracy against compression (1 / (1 - final sparsity)), one line per criterion: the mean "
            "over seeds, with a band of one standard deviation. The dense baselines (target sparsity 0) are a line "
            f"of their own, at compression 1.{axes}")
    return Part("Comparison", text, panels, grids, cohort_note(comp))


def training_curves(comp: Comparison) -> Part | None:
    keys = [k for k in ("eval/acc", "eval/loss", "train/acc", "train/loss") if comp.logs(k)]
    if not keys:
        return None

    def panels() -> list[Panel]:
        return [line(k, f"{k} by criterion") for k in keys]

    return Part("Training curves", "Validation (eval/*) and training (train/*) accuracy and loss against the "
                "trainer's step, one line per criterion (mean ± std over seeds) at each target sparsity.",
                panels(), per_target(comp, panels), PER_TARGET_NOTE + cohort_note(comp))


def sparsity(comp: Comparison) -> Part | None:
    keys = [k for k in ("sparsity/target", "sparsity/actual", "sparsity/masked") if comp.logs(k)]
    layers = [f"sparsity/{name}" for name in comp.layers()]
    layers += [k for k in (f"sparsity/masked/{name}" for name in comp.layers()) if comp.logs(k)]
    if not keys and not layers:
        return None

    def panels() -> list[Panel]:
        return [line(k, f"{k} by criterion") for k in keys + layers]

    return Part("Sparsity", "The schedule's target, the actual sparsity (zeros in the pruned weights), the masked "
                "fraction (weights the masks remove), and each layer's sparsity and masked fraction: where a "
                "criterion prunes (regrowth keeps each layer's masked fraction constant).",
                panels(), per_target(comp, panels), PER_TARGET_NOTE + cohort_note(comp))


def score_distributions(comp: Comparison) -> Part | None:
    keys = comp.score_keys()
    if not keys:
        return None

    def panels() -> list[Panel]:
        zeros = [line(k, f"{k} by criterion") for k in ("scores_zeros/all",) if comp.logs(k)]
        return [line(k, f"{k} (histogram over training)", groupby=None) for k in keys] + zeros

    grids = []
    for series, cohort, target, seed in score_picks(comp):
        fixed = {k: v for k, v in ((TARGET, target), (SEED, seed)) if v is not None}
        where = ", ".join([f"{'target sparsity' if k == TARGET else k} {v}" for k, v in fixed.items()] +
                          [cohort.setting] * bool(cohort.setting))
        grids.append(Grid(f"{series} ({where})" if where else series, [
            expr.Config(CRITERION) == series.split(" ")[0], *[expr.Config(k) == v for k, v in fixed.items()],
            *within(comp, cohort)], panels()))
    text = ("The criterion's scores at every pruning step (and every tracking.log_scores_every steps): one "
            "histogram panel per pruned layer and for all layers together (bins over log10(score) by default, "
            "zeros counted apart in scores_zeros/*). W&B draws one run's histograms per panel: the workspace "
            "shows the first visible run (pin one), the report one run per criterion.")
    return Part("Score distributions", text, panels(), grids)


def score_picks(comp: Comparison) -> list[tuple[str, Cohort, Any, Any]]:
    """One run per method and variant for the score grids: ``(series, cohort, target, seed)``, the highest target
    and the lowest seed of the first cohort that holds the series (dense runs left out)."""
    top, first = (comp.targets() or [None])[-1], (comp.seeds() or [None])[0]
    picks: dict[str, tuple[Cohort, Any, Any]] = {}
    for cohort in comp.cohorts:
        ids = set(cohort.run_ids)
        by_series: dict[str, list[Any]] = {}
        for run in (r for r in comp.runs if r.id in ids):
            by_series.setdefault(comp.series(run.id), []).append(run)
        for series, held in by_series.items():
            if series != "dense" and series not in picks:
                target = max((t for r in held if isinstance(t := r.config_value(TARGET), (int, float))), default=top)
                seed = min((r.config_value(SEED) for r in held if r.config_value(TARGET) == target), default=first)
                picks[series] = (cohort, target, seed)
    return [(s, *picks[s]) for s in sorted(picks)]


def cohort_note(comp: Comparison) -> str:
    """What the workspace's panels average over that the report splits: the cohorts' keys."""
    keys = comp.axes()
    return (f" The sweep also varies {', '.join(keys)}, which these panels do not split: filter the runs table by "
            "them too (the report has one grid per combination)." if keys else "")


def mask_churn(comp: Comparison) -> Part | None:
    if not comp.changes("masks/changed"):
        return None

    def panels() -> list[Panel]:
        return [line("masks/changed", "masks/changed by criterion")]

    return Part("Mask churn", "Weights whose mask flipped at each mask update: new pruning, and regrowth where a "
                "criterion or updater brings weights back.", panels(), per_target(comp, panels),
                PER_TARGET_NOTE + cohort_note(comp))


def run_comparer(comp: Comparison) -> Part:
    return Part("Runs", "Every run's config and summary side by side (differences only).",
                [wr.RunComparer(diff_only="split")], [Grid(None, [], [wr.RunComparer(diff_only="split")])])


SECTIONS = (comparison, training_curves, sparsity, score_distributions, mask_churn, run_comparer)


def parts(comp: Comparison) -> list[Part]:
    """The sections that this comparison's logged keys fill, in dashboard order."""
    return [p for build in SECTIONS if (p := build(comp)) is not None]
