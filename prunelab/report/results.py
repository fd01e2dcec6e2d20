"""The report's first two sections, read like a paper's results: the key figure, the summary table and, per
sparsity, which criteria are best and which cannot be told apart; then the paired differences against the
random and magnitude baselines with their confidence intervals, and how many seeds a difference needs."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from ..rundir import under
from . import data as rd
from . import figures as rf
from . import stats
from .blocks import Block, Context, Section, Table, mean_std, target_label

#: every criterion is compared with these baselines, where they ran: random pruning and its static sparse-training
#: form (criterion=static_erk: random ERK masks at init, kept fixed), magnitude and gradual magnitude pruning
#: (criterion=gmp). The presets are methods of their own (``criterion.label``), so each is its own reference.
REFERENCES = ("random", "static_erk", "magnitude", "gmp")
SIZING_DELTAS = (0.0025, 0.005, 0.01, 0.02)  # differences (accuracy fractions) the sizing table is given for
SHARED_KEYS = ("model.name", "model.hidden_sizes", "model.arch", "model.depth", "dataset.name", "pattern.type",
               "distribution.name", "pattern.scope", "schedule.start", "schedule.end", "schedule.start_step",
               "schedule.end_step", "schedule.pruning_frequency", "schedule.sparsity_decay_type", "trainer.max_steps",
               "trainer.epochs", "trainer.batch_size", "optimizer._target_", "optimizer.lr", "dataset.limit")
#: what only pruning depends on: shared if the pruned runs share it (a dense run keeps the defaults)
PRUNING_KEYS = ("schedule", "distribution", "pattern", "regrowth")


def series_name(criterion: str, setting: str) -> str:
    """The label :attr:`prunelab.report.data.Run.series` gives a criterion's runs in a setting."""
    return f"{criterion} [{setting}]" if setting else criterion


def reference_of(series: str) -> str | None:
    """The baseline (:data:`REFERENCES`) a criterion's series is, with or without a variant (``random
    (stream=independent)``: random drawn two ways in one report is two baselines), else None."""
    base = series.split(" (", 1)[0]
    return base if base in REFERENCES else None


def references(table: Mapping[str, object]) -> list[str]:
    """The series of ``table`` that are baselines, in :data:`REFERENCES` order (a baseline's variants together)."""
    return sorted((c for c in table if reference_of(c) is not None),
                  key=lambda c: (REFERENCES.index(reference_of(c) or ""), c))


def compared_before(ref: str, criterion: str, order: Sequence[str]) -> bool:
    """Whether ``criterion`` vs ``ref`` repeats a pair already shown: a reference against a later one (``order``:
    the references as shown)."""
    return criterion in order and order.index(criterion) < order.index(ref)


def pp(value: float) -> str:
    """An accuracy difference in percentage points, signed."""
    return f"{value * 100:+.2f}"


def interval(d: stats.PairedDiff) -> str:
    """``+1.23 [+0.45, +2.01] ▲``: mean difference and 95% interval in points; ▲/▼ where it excludes 0."""
    if d.n < 2:
        return f"{pp(d.mean)} (n={d.n}: no interval)"
    if d.no_spread:
        return f"{pp(d.mean)} (the same on all {d.n} seeds: no spread, no interval)"
    mark = " ▲" if d.sign > 0 else " ▼" if d.sign < 0 else ""
    return f"{pp(d.mean)} [{pp(d.low)}, {pp(d.high)}]{mark}"


def seeds_text(d: stats.PairedDiff) -> str:
    if d.n < 2:
        return "-"
    needed = d.seeds_needed
    if d.mean == 0:
        return "never (Δ = 0)"
    return "? (no spread)" if d.no_spread else "> 100000" if needed is None else str(needed)


# ---------------------------------------------------------------------------------------------- results


def setup_text(ctx: Context) -> str:
    """One paragraph: what was compared, on what, how many seeds and runs."""
    done = ctx.finished
    pruned = rd.pruned_runs(done)
    shared, by_pruned = rd.shared_config(done), rd.shared_config(pruned)
    shared = {k: by_pruned.get(k) if under(k, PRUNING_KEYS) else shared.get(k) for k in SHARED_KEYS}
    seeds = sorted({r.seed for r in done if r.seed is not None})
    criteria = sorted({r.criterion for r in pruned})
    schedules = {r.choices.get("schedule") for r in pruned}  # the option the pruned runs chose (Hydra's record)
    chosen = [f"schedule `{next(iter(schedules))}`"] if len(schedules) == 1 and None not in schedules else []
    facts = ", ".join(chosen + [f"{k} `{shared[k]}`" for k in SHARED_KEYS if shared.get(k) is not None])
    targets, dense = len({r.target for r in pruned}), sum(r.dense for r in done)
    dense_seeds = len({r.seed for r in done if r.dense})
    dense_text = "none of them dense" if not dense else f"{dense} of them dense (" + (
        "one per seed)" if dense == dense_seeds else f"{count(dense_seeds, 'seed')}: sweeps of several settings)")
    return (f"{count(len(criteria), 'criterion', 'criteria')} ({', '.join(f'`{c}`' for c in criteria) or 'none'}) "
            f"at {count(targets, 'target sparsity', 'target sparsities')}, {count(len(seeds), 'seed')} "
            f"({', '.join(map(str, seeds))}); {count(len(done), 'finished run')}, {dense_text}. Shared: "
            f"{facts or '-'}. Accuracies are test accuracies in %; ± is the standard deviation over seeds (ddof=1).")


def count(n: int, one: str, many: str | None = None) -> str:
    """``1 seed``, ``3 seeds``, ``2 criteria``."""
    return f"{n} {one if n == 1 else many or one + 's'}"


def results_section(ctx: Context) -> Section:
    """The key figure, the summary table, the dense baseline and the verdict per sparsity."""
    pruned = rd.pruned_runs(ctx.runs)
    acc = rd.aggregate(pruned, lambda r: r.test_acc)
    actual = rd.aggregate(pruned, lambda r: r.actual)
    baselines = rd.shared_baselines(rd.dense_baselines(ctx.runs))
    blocks: list[Block] = [setup_text(ctx)]
    blocks += ctx.figure(rf.accuracy_vs_sparsity(acc, actual, baselines, ctx.colour), "accuracy-vs-sparsity",
                         "Test accuracy vs compression (log axis), mean ± std over seeds; the criteria are offset "
                         "around each target so their error bars stay apart. Black, dashed: the dense baseline and "
                         "its ± std band (one dash per setting).")
    if not acc:
        blocks.append("No finished runs with a target sparsity above 0.")
    verdicts = {setting: stats.verdicts(table) for setting, table in ctx.seed_table.items()}
    if acc:
        where = "in each setting, the" if ctx.legend else "the"
        blocks.append("Test accuracy (%) by criterion and target sparsity, mean ± std over seeds (n). "
                      f"**Bold**: {where} best mean and every criterion indistinguishable from it (the paired 95% interval of the "
                      "difference includes 0; with one seed there is no interval, and only the best is bold). Full "
                      "precision in `accuracy.csv`.")
        blocks.append(summary_table(acc, verdicts))
    blocks.append(dense_text(baselines))
    blocks += verdict_texts(verdicts)
    if ctx.legend:
        blocks.append("These runs differ in more than criterion, target sparsity and seed; each series is labelled "
                      "`criterion [setting]` with what tells them apart:")
        names = list(dict.fromkeys(k for diff in ctx.legend.values() for k in diff))
        blocks.append(Table(["setting"] + names,
                            [[label] + [f"`{diff.get(k, '-')}`" for k in names] for label, diff in ctx.legend.items()]))
    return Section("Results", blocks)


def summary_table(acc: Mapping[tuple[str, float], rd.Stat], verdicts: Mapping[str, Sequence[stats.Verdict]]) -> Table:
    """Criterion x target sparsity -> ``mean ± std (n)``; rows by the mean at the highest target, best first;
    bold where the criterion is the best of its column or indistinguishable from it."""
    targets = sorted({t for _, t in acc})
    top = targets[-1]
    series = sorted(dict.fromkeys(s for s, _ in acc), key=lambda s: (-acc[(s, top)].mean if (s, top) in acc
                                                                     else math.inf, s))
    leading = {(series_name(c, setting), v.target) for setting, vs in verdicts.items() for v in vs
               for c in (v.best, *v.tied)}
    rows = [[s] + [mean_std(acc[(s, t)]) if (s, t) in acc else "-" for t in targets] for s in series]
    bold = {(i, j) for i, s in enumerate(series) for j, t in enumerate(targets, start=1) if (s, t) in leading}
    return Table(["criterion / target sparsity"] + [target_label(t) for t in targets], rows, bold)


def dense_text(baselines: Mapping[str, rd.Stat]) -> str:
    if not baselines:
        return "No dense baseline: add `schedule.target_sparsity=0.0` to the sweep (it runs once per seed)."
    return "Dense baseline (no pruning; one run per seed, whatever the criteria): " + "; ".join(
        f"{mean_std(b)}{f' [{s}]' if s else ''}" for s, b in baselines.items()) + "."


def verdict_texts(verdicts: Mapping[str, Sequence[stats.Verdict]]) -> list[Block]:
    """Per setting and sparsity: the best criterion, those indistinguishable from it, those below it."""
    out: list[Block] = []
    for setting, vs in verdicts.items():
        for v in vs:
            where = f" [{setting}]" if setting else ""
            text = f"**{target_label(v.target)}{where}**: best `{v.best}` ({v.means[v.best] * 100:.2f})"
            if v.tied:
                text += "; indistinguishable from it: " + _listing(v.tied)
            if v.worse:
                text += "; below it: " + _listing(v.worse)
            if v.unknown:
                text += "; too few seeds in common with it, or the same difference on every seed, to tell: " + \
                    ", ".join(f"`{c}`" for c in v.unknown)
            if not (v.tied or v.worse or v.unknown):
                text += " (the only criterion)"
            out.append(text + ".")
    if out:
        out.insert(0, "Per target sparsity, the best criterion by mean and how the others compare with it, paired by "
                      "seed: difference in points with its 95% interval (▼: the interval is below 0).")
    return out


def _listing(diffs: Mapping[str, stats.PairedDiff]) -> str:
    return ", ".join(f"`{c}` ({interval(d)})" for c, d in diffs.items())


# ---------------------------------------------------------------------------------------------- statistics


def statistics_section(ctx: Context) -> Section:
    """Every criterion against each baseline that ran (:data:`REFERENCES`), paired by seed, and the seeds a difference
    needs."""
    ran = [f"`{ref}`" for ref in dict.fromkeys(c for table in ctx.seed_table.values() for c in references(table))]
    against = f"against the baseline criteria that ran ({', '.join(ran)})" if ran else \
        "against the baseline criteria, had any run (" + ", ".join(f"`{r}`" for r in REFERENCES) + ")"
    blocks: list[Block] = [
        f"Every criterion against the dense baseline of its setting (what pruning costs) and {against} at each "
        "target sparsity, paired by seed (the "
        "same seed means the same initial weights, data order and split): the mean difference of test accuracy "
        "in points, with its 95% confidence interval from Student's t over the n seeds both have "
        "(mean ± t(0.975, n-1) · sd / √n). ▲ / ▼: the interval lies above / below 0, the difference is larger "
        "than the seed-to-seed noise. Each interval is one comparison, not corrected for the number of them: "
        "among 20 intervals of criteria that do not differ, about one excludes 0 by chance."]
    comparisons: list[stats.PairedDiff] = []
    for setting, table in ctx.seed_table.items():
        where = f" [{setting}]" if setting else ""
        targets = sorted({t for by_target in table.values() for t in by_target})
        if any((costs := against_dense(table, ctx.dense_seeds.get(setting, {}))).values()):
            blocks.append(difference_table(rd.DENSE + where, costs, targets))
            comparisons += [d for ds in costs.values() for d in ds.values()]
        order = references(table)
        found = {ref: by_target for ref in order
                 if any((by_target := stats.against(table, ref)).values())}  # a criterion to pair
        for ref, by_target in found.items():
            blocks.append(difference_table(ref + where, by_target, targets))
            comparisons += [d for ds in by_target.values() for c, d in ds.items()
                            if not compared_before(ref, c, order)]
        if found:
            blocks.append("Seeds a two-sided paired t-test (level 0.05) needs to detect the observed difference with "
                          "power 0.8, at the observed spread of the differences (itself estimated from these few "
                          "seeds: a guide for sizing the next sweep, not a guarantee):")
            if (seeds := seeds_table(found, targets, where)).rows:
                blocks.append(seeds)
            blocks.append(sizing_table(found, targets, where))
    if not comparisons:
        blocks.append("No dense, `random`, `static_erk`, `magnitude` or `gmp` runs to compare with (or no pruned "
                      "runs).")
    return Section("Paired differences", blocks)


def against_dense(table: stats.Table, dense: Mapping[object, float]) -> dict[float, dict[str, stats.PairedDiff]]:
    """``target -> criterion -> (criterion - dense)``, paired by seed: the accuracy pruning to the target costs."""
    seeds = {s: v for s, v in dense.items() if isinstance(s, int)}
    return {t: {c: stats.paired_difference(c, rd.DENSE, t, by_target[t], seeds) for c, by_target in table.items()
                if t in by_target and set(by_target[t]) & set(seeds)}
            for t in sorted({t for by_target in table.values() for t in by_target})} if seeds else {}


def difference_table(ref: str, by_target: Mapping[float, Mapping[str, stats.PairedDiff]],
                     targets: Sequence[float]) -> Table:
    criteria = sorted({c for ds in by_target.values() for c in ds})
    rows = [[c] + [interval(by_target[t][c]) if c in by_target.get(t, {}) else "-" for t in targets]
            for c in criteria]
    return Table([f"Δ vs {ref} (points) / target"] + [target_label(t) for t in targets], rows)


def seeds_table(found: Mapping[str, Mapping[float, Mapping[str, stats.PairedDiff]]], targets: Sequence[float],
                where: str) -> Table:
    rows = []
    for ref, by_target in found.items():
        for c in sorted({c for ds in by_target.values() for c in ds}):
            if compared_before(ref, c, list(found)):
                continue  # the same pair as (e.g.) random vs magnitude
            rows.append([f"{c} vs {ref}"] + [seeds_text(by_target[t][c]) if c in by_target.get(t, {}) else "-"
                                             for t in targets])
    return Table([f"seeds needed{where} / target"] + [target_label(t) for t in targets], rows)


def sizing_table(found: Mapping[str, Mapping[float, Mapping[str, stats.PairedDiff]]], targets: Sequence[float],
                 where: str) -> Table:
    """Per target: the pooled spread of the paired differences and the seeds each difference in
    :data:`SIZING_DELTAS` would need at that spread: what to plan a sweep with."""
    rows = []
    for t in targets:
        sd = stats.pooled_sd(d for by_target in found.values() for d in by_target.get(t, {}).values())
        needed = stats.sizing(sd, SIZING_DELTAS)
        unknown = math.isnan(sd) or sd <= stats.NO_SPREAD  # no spread seen (identical differences): nothing to plan with
        rows.append([target_label(t), "-" if math.isnan(sd) else f"{sd * 100:.2f}"] +
                    ["-" if unknown else "> 100000" if n is None else str(n) for n in needed])
    return Table([f"sizing{where}: target", "sd of paired differences (points)"] +
                 [f"seeds for {d * 100:g} points" for d in SIZING_DELTAS], rows)


def all_comparisons(ctx: Context) -> Iterable[tuple[str, str, stats.PairedDiff]]:
    """``(setting, reference kind, difference)`` for stats.csv: vs dense, vs each baseline, vs the best."""
    for setting, table in ctx.seed_table.items():
        for ds in against_dense(table, ctx.dense_seeds.get(setting, {})).values():
            for d in ds.values():
                yield setting, rd.DENSE, d
        for ref in references(table):
            for ds in stats.against(table, ref).values():
                for d in ds.values():
                    yield setting, ref, d
        for v in stats.verdicts(table):
            for d in (*v.tied.values(), *v.worse.values(), *v.unknown.values()):
                yield setting, "best", d
