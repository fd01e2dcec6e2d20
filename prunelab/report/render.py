"""``prunelab report DIR... [--out OUTDIR] [--title T]``: the offline comparison of many runs.

Reads run directories (anything under DIR holding ``summary.json``, ``metrics.jsonl`` or ``.hydra``; no W&B
needed) and writes to OUTDIR (default ``DIR/report``): ``report.html`` (self-contained: figures embedded as
base64 PNG, no external files), ``report.md`` (the same tables, figures linked), the ``fig-*.png`` files, and
``runs.csv``, ``accuracy.csv``, ``stats.csv``, ``jaccard.csv`` with the numbers at full precision.

It reads like a paper's results section: the key figure, the summary table and the verdict per sparsity first
(:mod:`.results`), the paired statistics next (:mod:`.stats`), then training curves, score distributions,
per-layer sparsity, criterion agreement, failed runs, and last every run (folded in HTML; :mod:`.sections`).
Each section is a list of blocks (:mod:`.blocks`: paragraphs, figures, tables) that the Markdown and HTML
writers here render alike. Loading and aggregation live in :mod:`.data`, the figures in :mod:`.figures`.
"""
from __future__ import annotations

import argparse
import base64
import csv
import html
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import data as rd
from . import figures as rf
from .blocks import Context, Image, Section, Table
from .results import all_comparisons, results_section, statistics_section
from .sections import (agreement_section, layers_section, problems_section, run_counts, runs_section, scores_section,
                       training_section)

DEFAULT_TITLE = "prunelab comparison report"


SECTIONS = (results_section, statistics_section, training_section, scores_section, layers_section,
            agreement_section, problems_section, runs_section)


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
    """The report as Markdown: the same sections, figures linked as the PNG files beside it; a collapsed section
    inside ``<details>`` (GitHub folds it too)."""
    parts = [f"# {title}", f"_{generated}_"]
    for sec in sections:
        parts.append(f"## {sec.title}")
        if sec.collapsed:
            parts.append(f"<details><summary>{html.escape(sec.title)}</summary>")
        for block in sec.blocks:
            if isinstance(block, Table):
                parts.append(md_table(block))
            elif isinstance(block, Image):
                parts.append(f"![{md_text(block.caption)}]({block.path.name})\n\n_{md_text(block.caption)}_")
            else:
                parts.append(block)
        if sec.collapsed:
            parts.append("</details>")
    return "\n\n".join(parts) + "\n"


def html_text(text: str) -> str:
    """Escape ``text`` and render its `code` and **bold** spans."""
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)


def html_table(table: Table) -> str:
    """An HTML table; bold cells as ``<strong>``; every cell carries its column's header (``data-label``) for the
    narrow-screen layout, where each row becomes a card."""
    labels = [html.escape(h, quote=True) for h in table.header]

    def cell(i: int, j: int, text: str) -> str:
        inner = html_text(text)
        inner = f"<strong>{inner}</strong>" if (i, j) in table.bold else inner
        return f'<td data-label="{labels[j] if j < len(labels) else ""}">{inner}</td>'

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


# Tables wrap their cells to fit the page (no cell refuses to break: long paths break anywhere); below 720 px
# each row becomes a card of "header: value" lines. Figures scale down to the page width.
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.45; overflow-wrap: break-word; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .15em; margin-top: 2em; }
.meta { color: #666; }
nav ul { columns: 2; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; box-sizing: border-box; }
figcaption { color: #555; font-size: .9em; }
.table { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: .86em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
td code { overflow-wrap: anywhere; word-break: break-all; }
th { background: #f3f3f3; }
tbody tr:nth-child(even) { background: #fafafa; }
code { background: #f3f3f3; padding: 0 .2em; border-radius: 3px; }
details > summary { cursor: pointer; color: #444; margin: .5em 0; }
@media (max-width: 720px) {
  body { margin: 1em auto; padding: 0 .6em; }
  nav ul { columns: 1; }
  .table table, .table thead, .table tbody, .table tr, .table td { display: block; width: auto; }
  .table thead { display: none; }
  .table tr { border: 1px solid #ccc; margin: 0 0 .6em; }
  .table td { border: none; border-bottom: 1px solid #eee; overflow-wrap: anywhere; }
  .table td::before { content: attr(data-label) ": "; font-weight: 600; color: #555; }
}
"""


def html_blocks(blocks: Sequence) -> list[str]:
    out = []
    for block in blocks:
        if isinstance(block, Table):
            out.append(html_table(block))
        elif isinstance(block, Image):
            out.append(html_image(block))
        else:
            out.append(f"<p>{html_text(block)}</p>")
    return out


def to_html(title: str, sections: Sequence[Section], generated: str) -> str:
    """The report as one self-contained HTML page: inline CSS, figures as data URIs, no scripts, no links out;
    a collapsed section folded in ``<details>``."""
    nav = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    body = []
    for sec in sections:
        body.append(f'<section id="{sec.anchor}"><h2>{html.escape(sec.title)}</h2>')
        inner = html_blocks(sec.blocks)
        if sec.collapsed:
            inner = [f"<details><summary>Show {html.escape(sec.title.lower())}</summary>", *inner, "</details>"]
        body += inner
        body.append("</section>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
            f'<h1>{html.escape(title)}</h1><p class="meta">{html.escape(generated)}</p>\n'
            f"<nav><ul>{nav}</ul></nav>\n" + "\n".join(body) + "\n</body></html>\n")


def write_csvs(ctx: Context) -> None:
    """``runs.csv`` (every run), ``accuracy.csv`` (per criterion and target; the dense baseline as series
    ``dense``), ``stats.csv`` (every paired difference), ``jaccard.csv`` (per pair and layer)."""
    with (ctx.out / "runs.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series", "criterion", "dense", "target", "seed", "status", "actual_sparsity", "masked_sparsity",
                    "val_acc", "test_acc", "path", "error"])
        for r in ctx.runs:
            s = r.summary
            w.writerow([r.series, r.criterion, r.dense, r.target, r.seed, r.status, s.get("sparsity/actual"),
                        s.get("sparsity/masked"), s.get("val/acc"), s.get("test/acc"), str(r.path), r.error or ""])
    acc = rd.aggregate(ctx.runs, lambda r: r.test_acc)
    actual = rd.aggregate(ctx.runs, lambda r: r.actual)
    dense = rd.dense_baselines(ctx.runs)
    with (ctx.out / "accuracy.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["series", "target", "n", "test_acc_mean", "test_acc_std", "actual_sparsity_mean"])
        for (s, t), st in acc.items():
            if t == 0.0:
                continue
            w.writerow([s, t, st.n, repr(st.mean), repr(st.std), repr(actual[(s, t)].mean)])
        for setting, st in dense.items():
            w.writerow([f"{rd.DENSE} [{setting}]" if setting else rd.DENSE, 0.0, st.n, repr(st.mean), repr(st.std),
                        repr(0.0)])
    with (ctx.out / "stats.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", "reference", "target", "criterion", "versus", "n", "mean_diff", "sd_diff", "ci95_low",
                    "ci95_high", "excludes_zero", "seeds_needed"])
        for setting, ref, d in all_comparisons(ctx):
            w.writerow([setting, ref, d.target, d.a, d.b, d.n, repr(d.mean), repr(d.sd), repr(d.low), repr(d.high),
                        d.sign != 0, d.seeds_needed if d.seeds_needed is not None else ""])
    with (ctx.out / "jaccard.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", "target", "layer", "criterion_a", "criterion_b", "n", "jaccard_mean", "jaccard_std"])
        for ag in ctx.agreements:
            for layer, pairs in sorted(ag.values.items()):
                for (a, b), st in sorted(pairs.items()):
                    if a < b:  # the matrix is symmetric: one row per pair
                        w.writerow([ag.setting, ag.target, layer, a, b, st.n, repr(st.mean), repr(st.std)])


def write_report(runs: list[rd.Run], roots: Sequence[Path], out: Path,
                 title: str = DEFAULT_TITLE) -> tuple[Path, Context]:
    """Build every section and write report.html, report.md, the PNGs and CSVs into ``out``; returns the HTML path
    and what the report was built from."""
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
    return html_path, ctx


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
                    "(looked for folders holding summary.json, metrics.jsonl or .hydra)", 2)
    out = Path(args.out) if args.out else roots[0] / "report"
    path, ctx = write_report(runs, roots, out, args.title)
    print(f"prunelab report: {run_counts(ctx, ', '.join(map(str, roots)))}", file=sys.stderr)
    print(os.path.abspath(path), flush=True)
    return 0
