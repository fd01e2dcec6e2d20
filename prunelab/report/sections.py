"""The report's sections after the results: training curves, score distributions, per-layer sparsity, criterion
agreement, failed runs, and (last, folded) every run."""
from __future__ import annotations

import math
from collections.abc import Sequence

from ..rundir import sparsity_text
from . import data as rd
from . import figures as rf
from .blocks import Block, Context, Section, Table, pct, where

RUN_KEYS = ("model.name", "dataset.name", "pattern.type", "pattern.scope", "distribution.name",
            "schedule.start_step", "schedule.end_step", "schedule.pruning_frequency", "schedule.sparsity_decay_type",
            "trainer.max_steps", "optimizer._target_", "optimizer.lr")


def training_section(ctx: Context) -> Section:
    """Sparsity (target, actual, masked) and validation accuracy over training steps."""
    groups = rd.by_series_and_target(rd.pruned_runs(ctx.runs))
    dense = [r for r in ctx.finished if r.dense]
    blocks = ctx.figure(rf.sparsity_curves(groups, ctx.colour), "sparsity-curves",
                        "Sparsity of the pruned layers over steps per criterion, one colour per target: the "
                        "scheduled target (a step function: it changes only at pruning steps), the actual sparsity "
                        "(zeros in the weights) as dots where it was logged, and the masked sparsity (what the "
                        "masks remove) as crosses where it differs from actual; mean over seeds.")
    blocks += masked_blocks(ctx)
    blocks += ctx.figure(rf.eval_curves(groups, ctx.colour, dense), "eval-curves",
                         "Validation accuracy over steps, one panel per target sparsity, mean over seeds; black, "
                         "dashed: the dense runs (one dash per setting).")
    return Section("Sparsity over training", blocks or ["No metrics.jsonl with sparsity in the finished runs."])


def masked_blocks(ctx: Context) -> list[Block]:
    """Where ``sparsity/actual`` and ``sparsity/masked`` differ: a table (nothing when they never do)."""
    gaps = rd.masked_gaps(ctx.runs)
    if not gaps:
        return []
    rows = [[s, sparsity_text(t), f"{g.largest:+.4f}", f"{g.final:+.4f}", str(g.steps)]
            for (s, t), g in sorted(gaps.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
    return ["Actual sparsity counts zeros in the weights, masked sparsity what the masks remove: they differ when "
            "kept weights are exactly 0 (e.g. `gradient` can bring back a pruned weight, at value 0, until "
            "training moves it). Where they differ:",
            Table(["criterion", "target", "largest actual − masked", "final actual − masked", "logged steps"], rows)]


def scores_section(ctx: Context) -> Section:
    """Per criterion: the score distribution of each layer over the logged (pruning) steps, as heatmaps."""
    blocks: list[Block] = [
        "For each criterion, one run (the highest target sparsity, lowest seed): each layer's score histograms "
        "(scores.jsonl) rebinned onto a common grid. x = step, y = log10 score, colour = fraction of the layer's "
        "weights in the bin (square-root colour scale). Zero scores (pruned weights under magnitude/snip) have no "
        "log10; their fraction is the red line (right axis) and is stated in each panel's title."]
    zero_rows: list[list[str]] = []
    layers_seen: list[str] = []
    regrown: list[str] = []
    for series, by_target in rd.by_series_and_target(rd.pruned_runs(ctx.runs)).items():
        run = rd.score_run([r for runs in by_target.values() for r in runs])
        if run is None:
            continue
        if run.regrowth:  # its scores.jsonl holds the initial masks' criterion's scores, not what its updates rank
            regrown.append(f"{series} (scores.jsonl holds its initial masks' {run.summary.get('criterion')} scores)")
            continue
        maps = {layer: hm for layer in rd.score_layers(run) if (hm := rd.score_heatmap(run, layer)) is not None}
        blocks += ctx.figure(rf.score_heatmaps(series, run, maps), f"scores-{series}",
                             f"Score distribution over steps: {series} (run `{run.name}`).")
        layers_seen += [n for n in maps if n not in layers_seen]
        zero_rows.append([series, sparsity_text(run.target)] + [
            f"{maps[n].zeros[-1]:.1%}" if n in maps else "-" for n in layers_seen])
    note = ["Not shown: dynamic sparse training, whose updates rank |W| to drop and |grad| (RigL) or chance (SET) "
            "to grow: " + "; ".join(regrown) + "."] if regrown else []
    if not zero_rows:
        return Section("Score distributions", note or ["No scores.jsonl in the finished runs."])
    blocks += note
    blocks.append("Fraction of zero scores at the last logged step (a pruning step: the scores it ranked). For a "
                  "criterion scored during training the zeros are mostly weights pruned before it (|W| = 0 scores "
                  "0); at initialization nothing was pruned before, and zeros are the criterion's own (SynFlow's "
                  "iterative rounds score what they pruned 0; a gradient that is exactly 0):")
    blocks.append(Table(["criterion", "target"] + layers_seen,
                        [r + ["-"] * (len(layers_seen) + 2 - len(r)) for r in zero_rows]))
    return Section("Score distributions", blocks)


def layers_section(ctx: Context) -> Section:
    """Final per-layer sparsity per criterion: grouped bars and a table."""
    cells = rd.layer_sparsity(rd.pruned_runs(ctx.runs))
    if not cells:
        return Section("Per-layer sparsity", ["No pruned finished runs with per-layer sparsity."])
    blocks = ctx.figure(rf.layer_sparsity_bars(cells, ctx.colour), "layer-sparsity",
                        "Final sparsity of each pruned layer, one bar per criterion, mean ± std over seeds; dashed: "
                        "the target (global ranking spreads it unevenly over layers).")
    layers = list(dict.fromkeys(n for _, _, n in cells))
    keys = sorted({(s, t) for s, t, _ in cells}, key=lambda k: (k[1], k[0]))
    rows = [[s, sparsity_text(t)] + [f"{cells[(s, t, n)].mean:.4f}" if (s, t, n) in cells else "-" for n in layers]
            for s, t in keys]
    # the per-layer targets a distribution set before any score (erk, uniform, ...; not global): one row each
    planned = {(r.series, r.target): r.summary["sparsity/layer_targets"] for r in ctx.finished
               if r.target and isinstance(r.summary.get("sparsity/layer_targets"), dict)}
    rows += [[f"{s} (target per layer)", sparsity_text(t)] + [f"{v[n]:.4f}" if n in v else "-" for n in layers]
             for (s, t), v in sorted(planned.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
    blocks.append(Table(["criterion", "target"] + layers, rows))
    return Section("Per-layer sparsity", blocks)


def agreement_section(ctx: Context) -> Section:
    """How much the criteria agree: Jaccard index of kept weights between runs that differ only in criterion."""
    found = ctx.agreements
    blocks: list[Block] = [
        "Runs that differ only in criterion (same config otherwise: model, dataset, pattern, scope, schedule, target "
        "sparsity, seed; but for what a method sets for itself, such as rigl's schedule and distribution) are "
        "compared by the Jaccard index |A ∩ B| / |A ∪ B| of their kept weights (masks.pt), per "
        "layer and over all pruned layers (`all`), averaged over the matching groups (seeds). 1 = the same weights "
        "kept; two independent random masks keeping a fraction d score d / (2 - d)."]
    if not found:
        blocks.append("No runs differ only in criterion (or they lack masks.pt): nothing to compare.")
        return Section("Criterion agreement", blocks)
    for ag in found:
        layers = ["all"] + sorted(n for n in ag.values if n != "all")
        label = sparsity_text(ag.target) + (f" [{ag.setting}]" if ag.setting else "")
        blocks += ctx.figure(rf.agreement_heatmaps(ag, layers), f"agreement-{label}",
                             f"Jaccard index of kept weights at target sparsity {label}.")
        blocks.append(agreement_matrix_table(ag))
        blocks.append(agreement_pairs_table(ag, layers))
    return Section("Criterion agreement", blocks)


def agreement_matrix_table(ag: rd.Agreement) -> Table:
    """The ``all``-layers criterion x criterion matrix as a table."""
    m = ag.matrix("all")
    rows = [[a] + ["-" if math.isnan(v) else f"{v:.3f}" for v in m[i]] for i, a in enumerate(ag.criteria)]
    return Table([f"Jaccard, all layers, target {sparsity_text(ag.target)}"] + ag.criteria, rows)


def agreement_pairs_table(ag: rd.Agreement, layers: Sequence[str]) -> Table:
    """One row per pair of criteria: the mean Jaccard per layer and the number of groups averaged."""
    pairs = sorted({(a, b) for a, b in ag.values["all"] if a < b})
    rows = [[f"{a} vs {b}"] + [f"{ag.values[n][(a, b)].mean:.3f}" if (a, b) in ag.values[n] else "-"
                               for n in layers] + [str(ag.values["all"][(a, b)].n)] for a, b in pairs]
    return Table([f"pair (target {sparsity_text(ag.target)})"] + list(layers) + ["n"], rows)


def problems_section(ctx: Context) -> Section:
    """Every run that failed, was interrupted or did not finish, with its error."""
    bad = [r for r in ctx.runs if not r.finished]
    if not bad:
        return Section("Failed and unfinished runs", ["None: every run found finished."])
    rows = [[r.name, r.status, (r.error or "").splitlines()[0] if r.error else "", f"`{where(r, ctx.roots)}`"]
            for r in bad]
    return Section("Failed and unfinished runs", [
        f"{len(bad)} runs have no result; they are not in the plots or tables above.",
        Table(["run", "status", "error", "run directory"], rows)])


def run_counts(ctx: Context, roots: str) -> str:
    """``N runs found under <roots>: X finished and compared, [Y superseded ..., ]Z failed or unfinished``."""
    superseded = f"{len(ctx.superseded)} superseded by a newer run of the same config, " if ctx.superseded else ""
    return (f"{len(ctx.runs) + len(ctx.superseded)} runs found under {roots}: {len(ctx.finished)} finished and "
            f"compared, {superseded}{len(ctx.runs) - len(ctx.finished)} failed or unfinished")


def runs_section(ctx: Context) -> Section:
    """How many runs were found, what they share, and one row per finished run (folded in HTML)."""
    done = ctx.finished
    shared = rd.shared_config(done)
    blocks: list[Block] = [run_counts(ctx, ", ".join(f"`{r}`" for r in ctx.roots)) + "."]
    keys = [k for k in RUN_KEYS if k in shared]
    if keys:
        blocks.append(Table(["shared setting", "value"], [[k, f"`{shared[k]}`"] for k in keys]))
    if ctx.superseded:
        dense = sum(r.dense for r in ctx.superseded)
        blocks.append(f"{len(ctx.superseded)} older runs repeat the config and seed of a newer run and are left out "
                      "(the newest counts once)" + (f"; {dense} of them are dense runs (a dense run prunes "
                      "nothing, whatever its criterion, so one per seed counts)" if dense else "") + ": " +
                      ", ".join(f"`{where(r, ctx.roots)}`" for r in ctx.superseded))
    rows = [[r.series, "0" if r.dense else sparsity_text(r.target), str(r.seed), f"{r.actual:.4f}",
             f"{r.masked:.4f}", pct(r.val_acc), pct(r.test_acc),
             f"`{where(r, ctx.roots)}`"] for r in sorted(done, key=lambda r: (r.target, r.series, r.seed or 0))]
    if rows:
        blocks.append(Table(["criterion", "target", "seed", "actual sparsity", "masked sparsity", "val acc",
                             "test acc", "run directory"], rows))
    return Section(f"All runs ({len(done)})", blocks, collapsed=True)
