"""The report's offline twin: the report spec (W&B's JSON, as ``--json`` writes it) rendered to HTML, each panel
drawn with matplotlib from the runs' local records (``metrics.jsonl``, ``scores.jsonl``, ``summary.json``, which
hold the same values as the W&B history and summary), so a comparison can be looked at before it is synced.

Only what the spec says is drawn: a grid's runs are those its run-set filters select, a line plot groups by its
``groupBy`` key (mean, band of one standard deviation where ``groupArea`` is ``stddev``), a histogram panel shows
one run's score histograms over training (as W&B does), a scatter plot the runs' summary values, a run comparer
the config keys in which the runs differ. This is a preview, not W&B's rendering: colours, sizes and W&B's own
bucketing of points differ.
"""
from __future__ import annotations

import html
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from .comparison import CRITERION, Comparison
from .runs import LoggedRun, flatten

DPI = 90
LOCAL_KEYS = {"trainer/step": "step", "_step": "step"}  # W&B's step axis as metrics.jsonl names it


def config_path(name: str) -> str:
    """A W&B nested-config address (``criterion.value.criterion_type``) as a config path."""
    parts = name.split(".")
    return ".".join([parts[0], *parts[2:]]) if len(parts) > 1 and parts[1] == "value" else name


def selected(runset: dict[str, Any], runs: list[LoggedRun]) -> list[LoggedRun]:
    """The runs a run set's filters select (the AND of its conditions; the forms the dashboard writes)."""
    def ok(run: LoggedRun, f: dict[str, Any]) -> bool:
        section, name, value = f["key"]["section"], f["key"]["name"], f["value"]
        have = run.config_value(name) if section == "config" else \
            {"group": run.group, "name": run.id, "jobType": run.job_type}.get(name)
        return have in value if f["op"] == "IN" else have == value

    conds = [f for f in runset.get("filters", {}).get("filters", []) if not f.get("disabled")]
    return [r for r in runs if all(ok(r, f) for f in conds)]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


class Local:
    """The local records of the runs (read once)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], Any] = {}

    def get(self, run: LoggedRun, name: str) -> Any:
        key = (run.id, name)
        if key not in self._cache:
            path = (run.path or Path(".")) / name
            self._cache[key] = flatten(json.loads(path.read_text())) if name == "summary.json" and path.exists() \
                else {} if name == "summary.json" else _jsonl(path)
        return self._cache[key]


def _figure() -> tuple[Figure, Any]:
    fig = Figure(figsize=(4.6, 3.0), layout="constrained")
    return fig, fig.subplots()


def _colour(i: int) -> Any:
    from matplotlib import colormaps

    return colormaps["tab10"](i % 10)


def series(run: LoggedRun, x: str, y: str, local: Local) -> list[tuple[float, float]]:
    """``(x, y)`` at every record of the run holding both: ``metrics.jsonl``, or ``scores.jsonl`` for the zeros
    that ``scores_zeros/<layer>`` counts apart from the histogram."""
    if y.startswith("scores_zeros/") and x == "step":
        layer = y.split("/", 1)[1]
        return [(float(r["step"]), float(r["zeros"])) for r in local.get(run, "scores.jsonl") if r["layer"] == layer]
    return [(float(r[x]), float(r[y])) for r in local.get(run, "metrics.jsonl")
            if isinstance(r.get(x), (int, float)) and isinstance(r.get(y), (int, float))]


def line_figure(cfg: dict[str, Any], runs: list[LoggedRun], local: Local) -> Figure:
    """Mean (and std band) of y against x over each group's runs, at every x some run logged."""
    (y,), x = cfg["metrics"], LOCAL_KEYS.get(cfg.get("xAxis", "_step"), cfg.get("xAxis", "_step"))
    group = config_path(cfg["groupBy"]) if cfg.get("groupBy") else None
    groups: dict[str, list[LoggedRun]] = defaultdict(list)
    for r in runs:
        groups[str(r.config_value(group)) if group else r.name].append(r)
    fig, ax = _figure()
    for i, (label, members) in enumerate(sorted(groups.items())):
        at: dict[float, list[float]] = defaultdict(list)
        for r in members:
            for xv, yv in series(r, x, y, local):
                at[xv].append(yv)
        xs = sorted(at)
        mean = np.array([statistics.fmean(at[v]) for v in xs])
        std = np.array([statistics.pstdev(at[v]) for v in xs])
        ax.plot(xs, mean, marker="o" if len(xs) < 12 else None, ms=3, color=_colour(i), label=label)
        if cfg.get("groupArea") == "stddev" and len(xs):
            ax.fill_between(xs, mean - std, mean + std, color=_colour(i), alpha=0.2, lw=0)
    if cfg.get("xLogScale"):
        ax.set_xscale("log", base=2)
    ax.set_xlabel(cfg.get("xAxisTitle") or cfg.get("xAxis", "_step"))
    ax.set_ylabel(cfg.get("yAxisTitle") or y)
    ax.legend(fontsize=7, title=group, title_fontsize=7)
    ax.grid(alpha=0.3)
    return fig


def histogram_figure(cfg: dict[str, Any], runs: list[LoggedRun], local: Local) -> Figure:
    """One run's histograms of ``scores/<layer>`` over training: a column of bins per logged step."""
    (key,) = cfg["metrics"]
    layer = key.split("/", 1)[1]
    fig, ax = _figure()
    run = runs[0] if runs else None
    recs = [r for r in local.get(run, "scores.jsonl") if r["layer"] == layer] if run else []
    steps = [r["step"] for r in recs]
    width = min(np.diff(steps)) if len(steps) > 1 else 1.0
    mesh = None
    for rec in recs:
        counts = np.asarray(rec["counts"], dtype=float)[:, None]
        mesh = ax.pcolormesh([rec["step"] - width / 2, rec["step"] + width / 2], rec["edges"],
                             np.where(counts > 0, counts, np.nan), cmap="viridis", shading="flat")
    if mesh is not None:
        fig.colorbar(mesh, ax=ax, label="weights per bin")
    log = bool(recs and recs[0].get("log_scale"))
    ax.set_xlabel("trainer/step")
    ax.set_ylabel(f"log10 score ({layer})" if log else f"score ({layer})")
    ax.set_title(run.name if run else "no run", fontsize=8)
    return fig


def scatter_figure(cfg: dict[str, Any], runs: list[LoggedRun], local: Local) -> Figure:
    """Each run's summary values (``summary:<key>``), one colour per criterion."""
    x, y = (cfg[a].split(":", 1)[1] for a in ("xAxis", "yAxis"))
    fig, ax = _figure()
    crits = sorted({str(r.config_value(CRITERION)) for r in runs})
    for r in runs:
        s = local.get(r, "summary.json")
        if isinstance(s.get(x), (int, float)) and isinstance(s.get(y), (int, float)):
            c = crits.index(str(r.config_value(CRITERION)))
            ax.scatter(s[x], s[y], s=12, color=_colour(c), label=crits[c])
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7)
    if cfg.get("xAxisLogScale"):
        ax.set_xscale("log", base=2)
    ax.set(xlabel=x, ylabel=y)
    ax.grid(alpha=0.3)
    return fig


def comparer_html(runs: list[LoggedRun], local: Local) -> str:
    """The config keys in which the runs differ, and their test accuracy, one column per run."""
    flat = [{k: v for k, v in flatten(r.config).items() if not isinstance(v, dict)} for r in runs]
    keys = sorted(k for k in set().union(*flat) if len({json.dumps(f.get(k)) for f in flat}) > 1)
    head = "".join(f"<th>{html.escape(r.name)}</th>" for r in runs)
    rows = [f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{html.escape(str(f.get(k)))}</td>" for f in flat)
            + "</tr>" for k in keys]
    acc = "".join(f"<td>{local.get(r, 'summary.json').get('test/acc', float('nan')):.4f}</td>" for r in runs)
    return (f"<div class='comparer'><table><tr><th></th>{head}</tr>{''.join(rows)}"
            f"<tr><td>summary test/acc</td>{acc}</tr></table></div>")


def panel_html(panel: dict[str, Any], runs: list[LoggedRun], local: Local, out_dir: Path, n: int) -> str:
    """One panel: a figure (PNG next to the page) with its title, or the run comparer's table."""
    cfg, kind = panel.get("config", {}), panel["viewType"]
    if kind == "Run Comparer":
        return comparer_html(runs, local)
    if kind == "Scatter Plot":
        fig = scatter_figure(cfg, runs, local)
    elif kind == "Run History Line Plot" and cfg["metrics"][0].startswith("scores/"):
        fig = histogram_figure(cfg, runs, local)
    elif kind == "Run History Line Plot":
        fig = line_figure(cfg, runs, local)
    else:
        return f"<figure><figcaption>{html.escape(kind)}: not previewed</figcaption></figure>"
    name = f"panel-{n:03d}.png"
    fig.savefig(out_dir / name, dpi=DPI, facecolor="white")
    title = html.escape(cfg.get("chartTitle") or ", ".join(cfg.get("metrics", [])))
    return f"<figure><img src='{name}' alt='{title}'><figcaption>{title}</figcaption></figure>"


def _text(block: dict[str, Any]) -> str:
    parts = []
    for c in block.get("children", []):
        t = html.escape(c.get("text", ""))
        parts.append(f"<code>{t}</code>" if c.get("inlineCode") else t)
    return "".join(parts)


def block_html(block: dict[str, Any], comp: Comparison, local: Local, out_dir: Path, counter: list[int]) -> str:
    kind = block["type"]
    if kind == "heading":
        return f"<h{block['level']}>{_text(block)}</h{block['level']}>"
    if kind == "paragraph":
        return f"<p>{_text(block)}</p>" if _text(block) else ""
    if kind == "markdown-block":
        body = block.get("content", "").strip().strip("`").removeprefix("bash").strip()
        return f"<pre>{html.escape(body)}</pre>"
    if kind == "code-block":
        return "<pre>" + html.escape("\n".join(c.get("text", "") for c in block["children"][0]["children"])) + "</pre>"
    if kind == "panel-grid":
        meta = block["metadata"]
        runs = selected(meta["runSets"][0], comp.runs)
        cells = []
        for panel in meta["panelBankSectionConfig"]["panels"]:
            counter[0] += 1
            cells.append(panel_html(panel, runs, local, out_dir, counter[0]))
        count = f"{len(runs)} run{'' if len(runs) == 1 else 's'}"
        return f"<p class='runs'>{count}</p><div class='grid'>{''.join(cells)}</div>"
    return ""


STYLE = """body{font-family:sans-serif;max-width:1480px;margin:1em auto;color:#222}
.grid{display:grid;grid-template-columns:repeat(3,1fr);gap:8px} figure{margin:0;border:1px solid #ddd;padding:4px}
figure img{width:100%} figcaption{font-size:12px;color:#555} pre{background:#f4f4f4;padding:6px;font-size:12px;
white-space:pre-wrap;max-height:16em;overflow:auto} .runs{font-size:12px;color:#777;margin:0}
.comparer{overflow:auto;font-size:11px} td,th{border:1px solid #ddd;padding:2px 4px}"""


def render(spec: dict[str, Any], comp: Comparison, out_dir: str | Path) -> Path:
    """Write ``index.html`` and its panel pictures into ``out_dir``; returns the page's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report, local, counter = spec["report"], Local(), [0]
    body = [f"<h1>{html.escape(report['displayName'])}</h1>",
            "<p><i>Offline preview of the W&B report spec (prunelab dashboard --preview).</i></p>"]
    body += [block_html(b, comp, local, out, counter) for b in report["spec"]["blocks"]
             if b["type"] != "table-of-contents"]
    page = out / "index.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report['displayName'])}"
                    f"</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")
    return page
