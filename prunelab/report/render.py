"""``prunelab report DIR... [--out OUTDIR] [--title T]``: the offline comparison of many runs.

Reads run directories (anything under DIR holding ``summary.json``, ``metrics.jsonl`` or ``.hydra``; no W&B
needed) and writes to OUTDIR (default ``DIR/report``): ``report.html`` (self-contained: figures embedded as
base64 PNG, no external files), ``report.md`` (the same tables, figures linked), the ``fig-*.png`` files, and
``runs.csv``, ``accuracy.csv``, ``jaccard.csv`` with the numbers at full precision.

The sections are built as a list of blocks (paragraphs, figures, tables) by one function each; the Markdown and
HTML writers render the same blocks. Loading and aggregation live in :mod:`prunelab.report.data`, the figures in
:mod:`prunelab.report.figures`.
"""
from __future__ import annotations

import argparse
import base64
import csv
import html
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from . import data as rd
from . import figures as rf

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DEFAULT_TITLE = "prunelab comparison report"


# ---------------------------------------------------------------------------------------------- blocks


@dataclass
class Table:
    """A table of strings; ``bold`` holds (row, column) cells to emphasise."""

    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)


@dataclass
class Image:
    """A PNG written into the output folder, with its caption."""

    path: Path
    caption: str


Block = str | Table | Image  # a str is a paragraph; `code` spans are rendered in both formats


@dataclass
class Section:
    title: str
    blocks: list[Block]

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


@dataclass
class Context:
    """What every section builder needs: the runs, the output folder, one colour per series."""

    runs: list[rd.Run]
    roots: list[Path]
    out: Path
    colour: dict[str, str]
    legend: dict[str, dict[str, str]] = field(default_factory=dict)  # setting label -> differing config
    superseded: list[rd.Run] = field(default_factory=list)  # repeats of a newer run's config, left out

    @property
    def finished(self) -> list[rd.Run]:
        return rd.finished_runs(self.runs)

    @cached_property
    def agreements(self) -> list[rd.Agreement]:
        """The criterion agreement matrices (masks are read once, for the section and for jaccard.csv)."""
        return rd.agreements(self.runs)

    def figure(self, fig: Figure | None, name: str, caption: str) -> list[Block]:
        """Save ``fig`` (if any) as ``fig-<name>.png`` and return it as a block list."""
        if fig is None:
            return []
        return [Image(rf.save(fig, self.out / f"fig-{_slug(name)}.png"), caption)]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 100:.2f}"


def mean_std(stat: rd.Stat, scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std (n=k)`` with the values times ``scale``; no std for a single value."""
    mean = f"{stat.mean * scale:.{digits}f}"
    std = "" if stat.n < 2 else f" ± {stat.std * scale:.{digits}f}"
    return f"{mean}{std} (n={stat.n})"


def target_label(target: float) -> str:
    return "0.00 (dense)" if target == 0 else f"{target:.2f} ({1 / max(1 - target, 1e-9):.3g}×)"


def where(run: rd.Run, roots: Sequence[Path]) -> str:
    """The run directory relative to the report root that holds it."""
    for root in roots:
        root = root.resolve()
        if run.path == root or root in run.path.parents:
            return str(Path(root.name) / run.path.relative_to(root))
    return str(run.path)


# ---------------------------------------------------------------------------------------------- sections


def overview_section(ctx: Context) -> Section:
    """How many runs were found, what they share, and one row per run."""
    done = ctx.finished
    shared = rd.shared_config(done)
    keys = [k for k in ("model.name", "dataset.name", "pattern.type", "pattern.scope", "schedule.start_step",
                        "schedule.end_step", "schedule.pruning_frequency", "schedule.sparsity_decay_type",
                        "trainer.max_steps", "optimizer._target_", "optimizer.lr") if k in shared]
    superseded = f"{len(ctx.superseded)} superseded by a newer run of the same config, " if ctx.superseded else ""
    blocks: list[Block] = [
        f"{len(ctx.runs) + len(ctx.superseded)} runs found under {', '.join(f'`{r}`' for r in ctx.roots)}: "
        f"{len(done)} finished and compared, {superseded}{len(ctx.runs) - len(done)} failed or unfinished (listed "
        "in the last section). Means are over seeds; ± is the sample standard deviation (ddof=1). Accuracies are "
        "in %.",
    ]
    if keys:
        blocks.append(Table(["shared setting", "value"], [[k, f"`{shared[k]}`"] for k in keys]))
    if ctx.legend:
        blocks.append("These runs differ in more than criterion, target sparsity and seed; each line is labelled "
                      "`criterion [setting]` with the setting that tells them apart:")
        names = list(dict.fromkeys(k for diff in ctx.legend.values() for k in diff))
        blocks.append(Table(["setting"] + names,
                            [[label] + [f"`{diff.get(k, '-')}`" for k in names] for label, diff in ctx.legend.items()]))
    rows = [[r.series, f"{r.target:.2f}", str(r.seed), f"{r.actual:.4f}",
             pct(float(r.summary.get("val/acc", math.nan))), pct(r.test_acc), f"`{where(r, ctx.roots)}`"] for r in done]
    if rows:
        blocks.append(Table(["criterion", "target", "seed", "actual sparsity", "val acc", "test acc", "run directory"],
                            rows))
    if ctx.superseded:
        blocks.append(f"{len(ctx.superseded)} older runs repeat the config and seed of a newer run and are left out "
                      "(the newest counts once): " + ", ".join(f"`{where(r, ctx.roots)}`" for r in ctx.superseded))
    return Section("Overview", blocks)


def accuracy_section(ctx: Context) -> Section:
    """Test accuracy vs sparsity, one line per criterion, with the dense baseline."""
    acc = rd.aggregate(ctx.runs, lambda r: r.test_acc)
    actual = rd.aggregate(ctx.runs, lambda r: r.actual)
    baselines = rd.dense_baselines(ctx.runs)
    fig = rf.accuracy_vs_sparsity(acc, actual, baselines, ctx.colour)
    blocks: list[Block] = ctx.figure(fig, "accuracy-vs-sparsity",
                                     "Test accuracy vs compression ratio (log axis; labels: ratio and final actual "
                                     "sparsity), mean ± std over seeds (bars and bands).")
    if baselines:
        blocks.append("Dense baseline (target sparsity 0, all criteria pooled): " + "; ".join(
            f"{mean_std(b)}{f' [{s}]' if s else ''}" for s, b in baselines.items()) + ".")
    else:
        blocks.append("No dense baseline: add a run with `schedule.target_sparsity=0.0` to the sweep.")
    if not acc:
        blocks.append("No finished runs to plot.")
    return Section("Accuracy vs sparsity", blocks)


def accuracy_table(acc: dict[tuple[str, float], rd.Stat]) -> Table:
    """Criterion x target sparsity -> test accuracy mean ± std (n); the best mean of each column in bold."""
    series = list(dict.fromkeys(s for s, _ in acc))
    targets = sorted({t for _, t in acc})
    rows = [[s] + [mean_std(acc[(s, t)]) if (s, t) in acc else "-" for t in targets] for s in series]
    bold = set()
    for j, t in enumerate(targets, start=1):
        best = max((acc[(s, t)].mean for s in series if (s, t) in acc), default=math.nan)
        bold |= {(i, j) for i, s in enumerate(series) if (s, t) in acc and acc[(s, t)].mean == best}
    return Table(["criterion / target sparsity"] + [target_label(t) for t in targets], rows, bold)


def table_section(ctx: Context) -> Section:
    """The criterion x sparsity accuracy table."""
    acc = rd.aggregate(ctx.runs, lambda r: r.test_acc)
    if not acc:
        return Section("Test accuracy table", ["No finished runs."])
    return Section("Test accuracy table", [
        "Test accuracy (%) by criterion and target sparsity: mean ± std over seeds (n runs); the best mean of each "
        "column in bold. Full precision in `accuracy.csv`.",
        accuracy_table(acc),
    ])


def training_section(ctx: Context) -> Section:
    """Sparsity (target and actual) and validation accuracy over training steps."""
    groups = rd.by_series_and_target(ctx.runs)
    blocks = ctx.figure(rf.sparsity_curves(groups, ctx.colour), "sparsity-curves",
                        "Sparsity of the pruned layers over steps per criterion: actual (solid) and scheduled "
                        "target (dashed), one colour per target sparsity, mean over seeds (metrics.jsonl).")
    blocks += ctx.figure(rf.eval_curves(groups, ctx.colour), "eval-curves",
                         "Validation accuracy over steps, one panel per target sparsity, mean over seeds.")
    return Section("Sparsity over training", blocks or ["No metrics.jsonl with sparsity in the finished runs."])


def scores_section(ctx: Context) -> Section:
    """Per criterion: the score distribution of each layer over the logged (pruning) steps, as heatmaps."""
    blocks: list[Block] = [
        "For each criterion, one run (the highest target sparsity, lowest seed): each layer's score histograms "
        "(scores.jsonl) rebinned onto a common grid. x = step, y = log10 score, colour = fraction of the layer's "
        "weights in the bin (square-root colour scale). Zero scores (pruned weights under magnitude/snip) have no "
        "log10; their fraction is the red line (right axis) and is stated in each panel's title."]
    zero_rows: list[list[str]] = []
    layers_seen: list[str] = []
    for series, by_target in rd.by_series_and_target(ctx.runs).items():
        run = rd.score_run([r for runs in by_target.values() for r in runs])
        if run is None:
            continue
        maps = {layer: hm for layer in rd.score_layers(run) if (hm := rd.score_heatmap(run, layer)) is not None}
        blocks += ctx.figure(rf.score_heatmaps(series, run, maps), f"scores-{series}",
                             f"Score distribution over steps: {series} (run `{run.name}`).")
        layers_seen += [n for n in maps if n not in layers_seen]
        zero_rows.append([series, f"{run.target:.2f}"] + [
            f"{maps[n].zeros[-1]:.1%}" if n in maps else "-" for n in layers_seen])
    if len(blocks) == 1:
        return Section("Score distributions", ["No scores.jsonl in the finished runs."])
    blocks.append("Fraction of zero scores at the last logged step:")
    blocks.append(Table(["criterion", "target"] + layers_seen,
                        [r + ["-"] * (len(layers_seen) + 2 - len(r)) for r in zero_rows]))
    return Section("Score distributions", blocks)


def layers_section(ctx: Context) -> Section:
    """Final per-layer sparsity per criterion: grouped bars and a table."""
    cells = rd.layer_sparsity(ctx.runs)
    cells = {k: v for k, v in cells.items() if k[1] > 0}
    if not cells:
        return Section("Per-layer sparsity", ["No pruned finished runs with per-layer sparsity."])
    blocks = ctx.figure(rf.layer_sparsity_bars(cells, ctx.colour), "layer-sparsity",
                        "Final sparsity of each pruned layer, one bar per criterion, mean ± std over seeds; dashed: "
                        "the target (global scope spreads it unevenly over layers).")
    layers = list(dict.fromkeys(n for _, _, n in cells))
    keys = sorted({(s, t) for s, t, _ in cells}, key=lambda k: (k[1], k[0]))
    rows = [[s, f"{t:.2f}"] + [f"{cells[(s, t, n)].mean:.4f}" if (s, t, n) in cells else "-" for n in layers]
            for s, t in keys]
    # the per-layer targets a distribution set before any score (erk, uniform, ...; not global): one row each
    planned = {(r.series, r.target): r.summary["sparsity/layer_targets"] for r in ctx.finished
               if r.target and isinstance(r.summary.get("sparsity/layer_targets"), dict)}
    rows += [[f"{s} (target per layer)", f"{t:.2f}"] + [f"{v[n]:.4f}" if n in v else "-" for n in layers]
             for (s, t), v in sorted(planned.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
    blocks.append(Table(["criterion", "target"] + layers, rows))
    return Section("Per-layer sparsity", blocks)


def agreement_section(ctx: Context) -> Section:
    """How much the criteria agree: Jaccard index of kept weights between runs that differ only in criterion."""
    found = ctx.agreements
    blocks: list[Block] = [
        "Runs that differ only in criterion (same config otherwise: model, dataset, pattern, scope, schedule, target "
        "sparsity, seed) are compared by the Jaccard index |A ∩ B| / |A ∪ B| of their kept weights (masks.pt), per "
        "layer and over all pruned layers (`all`), averaged over the matching groups (seeds). 1 = the same weights "
        "kept; two independent random masks keeping a fraction d score d / (2 - d)."]
    if not found:
        blocks.append("No runs differ only in criterion (or they lack masks.pt): nothing to compare.")
        return Section("Criterion agreement", blocks)
    for ag in found:
        layers = ["all"] + sorted(n for n in ag.values if n != "all")
        label = f"{ag.target:.2f}" + (f" [{ag.setting}]" if ag.setting else "")
        blocks += ctx.figure(rf.agreement_heatmaps(ag, layers), f"agreement-{label}",
                             f"Jaccard index of kept weights at target sparsity {label}.")
        blocks.append(agreement_matrix_table(ag))
        blocks.append(agreement_pairs_table(ag, layers))
    return Section("Criterion agreement", blocks)


def agreement_matrix_table(ag: rd.Agreement) -> Table:
    """The ``all``-layers criterion x criterion matrix as a table."""
    m = ag.matrix("all")
    rows = [[a] + ["-" if math.isnan(v) else f"{v:.3f}" for v in m[i]] for i, a in enumerate(ag.criteria)]
    return Table([f"Jaccard, all layers, target {ag.target:.2f}"] + ag.criteria, rows)


def agreement_pairs_table(ag: rd.Agreement, layers: Sequence[str]) -> Table:
    """One row per pair of criteria: the mean Jaccard per layer and the number of groups averaged."""
    pairs = sorted({(a, b) for a, b in ag.values["all"] if a < b})
    rows = [[f"{a} vs {b}"] + [f"{ag.values[n][(a, b)].mean:.3f}" if (a, b) in ag.values[n] else "-"
                               for n in layers] + [str(ag.values["all"][(a, b)].n)] for a, b in pairs]
    return Table([f"pair (target {ag.target:.2f})"] + list(layers) + ["n"], rows)


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


SECTIONS = (overview_section, accuracy_section, table_section, training_section, scores_section, layers_section,
            agreement_section, problems_section)


# ---------------------------------------------------------------------------------------------- writers


def md_text(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(table: Table) -> str:
    """A GitHub-flavoured Markdown table; bold cells as ``**x**``."""
    def cell(i: int, j: int, text: str) -> str:
        return f"**{md_text(text)}**" if (i, j) in table.bold else md_text(text)

    lines = ["| " + " | ".join(md_text(h) for h in table.header) + " |",
             "|" + "|".join(" --- " for _ in table.header) + "|"]
    lines += ["| " + " | ".join(cell(i, j, c) for j, c in enumerate(row)) + " |" for i, row in enumerate(table.rows)]
    return "\n".join(lines)


def to_markdown(title: str, sections: Sequence[Section], generated: str) -> str:
    """The report as Markdown: the same sections, figures linked as the PNG files beside it."""
    parts = [f"# {title}", f"_{generated}_"]
    for sec in sections:
        parts.append(f"## {sec.title}")
        for block in sec.blocks:
            if isinstance(block, Table):
                parts.append(md_table(block))
            elif isinstance(block, Image):
                parts.append(f"![{md_text(block.caption)}]({block.path.name})\n\n_{md_text(block.caption)}_")
            else:
                parts.append(block)
    return "\n\n".join(parts) + "\n"


def html_text(text: str) -> str:
    """Escape ``text`` and render its `code` spans."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def html_table(table: Table) -> str:
    """An HTML table; bold cells as ``<strong>``."""
    def cell(i: int, j: int, text: str) -> str:
        inner = html_text(text)
        return f"<td><strong>{inner}</strong></td>" if (i, j) in table.bold else f"<td>{inner}</td>"

    head = "".join(f"<th>{html_text(h)}</th>" for h in table.header)
    body = "\n".join("<tr>" + "".join(cell(i, j, c) for j, c in enumerate(row)) + "</tr>"
                     for i, row in enumerate(table.rows))
    return f'<div class="table"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>'


def html_image(image: Image) -> str:
    """A figure with the PNG embedded as a base64 data URI."""
    data = base64.b64encode(image.path.read_bytes()).decode("ascii")
    cap = html_text(image.caption)
    return f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(image.caption)}">' \
           f"<figcaption>{cap}</figcaption></figure>"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .15em; margin-top: 2em; }
.meta { color: #666; }
nav ul { columns: 2; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; }
.table { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; }
tbody tr:nth-child(even) { background: #fafafa; }
code { background: #f3f3f3; padding: 0 .2em; border-radius: 3px; }
"""


def to_html(title: str, sections: Sequence[Section], generated: str) -> str:
    """The report as one self-contained HTML page: inline CSS, figures as data URIs, no scripts, no links out."""
    nav = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    body = []
    for sec in sections:
        body.append(f'<section id="{sec.anchor}"><h2>{html.escape(sec.title)}</h2>')
        for block in sec.blocks:
            if isinstance(block, Table):
                body.append(html_table(block))
            elif isinstance(block, Image):
                body.append(html_image(block))
            else:
                body.append(f"<p>{html_text(block)}</p>")
        body.append("</section>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            f'<h1>{html.escape(title)}</h1><p class="meta">{html.escape(generated)}</p>\n'
            f"<nav><ul>{nav}</ul></nav>\n" + "\n".join(body) + "\n</body></html>\n")


def write_csvs(ctx: Context) -> None:
    """``runs.csv`` (every run), ``accuracy.csv`` (per criterion and target), ``jaccard.csv`` (per pair and layer)."""
    with (ctx.out / "runs.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series", "criterion", "target", "seed", "status", "actual_sparsity", "val_acc", "test_acc",
                    "path", "error"])
        for r in ctx.runs:
            s = r.summary
            w.writerow([r.series, r.criterion, r.target, r.seed, r.status, s.get("sparsity/actual"), s.get("val/acc"),
                        s.get("test/acc"), str(r.path), r.error or ""])
    acc = rd.aggregate(ctx.runs, lambda r: r.test_acc)
    actual = rd.aggregate(ctx.runs, lambda r: r.actual)
    with (ctx.out / "accuracy.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series", "target", "n", "test_acc_mean", "test_acc_std", "actual_sparsity_mean"])
        for (s, t), st in acc.items():
            w.writerow([s, t, st.n, repr(st.mean), repr(st.std), repr(actual[(s, t)].mean)])
    with (ctx.out / "jaccard.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", "target", "layer", "criterion_a", "criterion_b", "n", "jaccard_mean", "jaccard_std"])
        for ag in ctx.agreements:
            for layer, pairs in sorted(ag.values.items()):
                for (a, b), st in sorted(pairs.items()):
                    if a < b:  # the matrix is symmetric: one row per pair
                        w.writerow([ag.setting, ag.target, layer, a, b, st.n, repr(st.mean), repr(st.std)])


def write_report(runs: list[rd.Run], roots: Sequence[Path], out: Path, title: str = DEFAULT_TITLE) -> Path:
    """Build every section and write report.html, report.md, the PNGs and CSVs into ``out``; returns the HTML path."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("fig-*.png"):  # figures of an earlier report into the same folder
        old.unlink()
    runs, superseded = rd.split_duplicates(runs)
    legend = rd.label_settings(runs)
    series = sorted({r.series for r in rd.finished_runs(runs)})
    ctx = Context(runs, list(roots), out, rf.colours(series), legend, superseded)
    sections = [build(ctx) for build in SECTIONS]
    generated = f"Generated by prunelab report on {time.strftime('%Y-%m-%d %H:%M:%S')} from {len(runs)} runs."
    (out / "report.md").write_text(to_markdown(title, sections, generated))
    html_path = out / "report.html"
    html_path.write_text(to_html(title, sections, generated))
    write_csvs(ctx)
    return html_path


# ---------------------------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="prunelab report",
        description="Compare pruning runs offline: accuracy vs sparsity, sparsity curves, score distributions, "
                    "per-layer sparsity and criterion agreement, as one self-contained HTML page and Markdown.")
    p.add_argument("dirs", nargs="+", metavar="DIR",
                   help="folders searched recursively for run directories (summary.json, metrics.jsonl or .hydra)")
    p.add_argument("--out", metavar="OUTDIR", help="output folder (default: report/ inside the first DIR)")
    p.add_argument("--title", default=DEFAULT_TITLE, help=f"report title (default: {DEFAULT_TITLE!r})")
    return p.parse_args(list(argv))


def fail(message: str, code: int = 1) -> int:
    print(f"prunelab report: error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prunelab report``; returns the exit status (0: report written)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    roots = [Path(d) for d in args.dirs]
    missing = [str(d) for d in roots if not d.is_dir()]
    if missing:
        return fail(f"not a directory: {', '.join(missing)}", 2)
    runs = rd.load_runs(roots)
    if not runs:
        return fail(f"no runs found under {', '.join(map(str, roots))} "
                    "(looked for folders holding summary.json, metrics.jsonl or .hydra)")
    out = Path(args.out) if args.out else roots[0] / "report"
    path = write_report(runs, roots, out, args.title)
    n_ok = len(rd.finished_runs(runs))
    print(f"prunelab report: {len(runs)} runs ({n_ok} finished, {len(runs) - n_ok} failed or unfinished)",
          file=sys.stderr)
    print(os.path.abspath(path), flush=True)
    return 0
