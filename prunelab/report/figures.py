"""The figures of the offline report, drawn with matplotlib (Agg, no pyplot state): each function takes
aggregated data from :mod:`prunelab.report.data` and returns a :class:`~matplotlib.figure.Figure` (None when
there is nothing to draw)."""
from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

from ..rundir import sparsity_text
from .data import Agreement, Run, ScoreHeatmap, Stat, mean_curve, random_jaccard

DPI = 110


def colours(series: Sequence[str]) -> dict[str, str]:
    """One stable colour per series (tab10, then tab20 beyond ten)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(series) <= 10 else "tab20"]
    return {s: cmap(i % cmap.N) for i, s in enumerate(series)}


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG and return the path."""
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _grid(n: int, ncols: int, width: float, height: float) -> tuple[Figure, list]:
    """A constrained-layout figure with ``n`` axes in rows of ``ncols`` (unused axes removed)."""
    ncols = max(1, min(n, ncols))
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def legend_below(fig: Figure, handles: Sequence, labels: Sequence[str]) -> None:
    """One legend under the figure's plots, in as many columns as its longest label fits, the figure taller by its
    rows: beside the axes, long labels (``magnitude [distribution=erk, pattern=2in4] (n=3)``) squeeze the axes
    to nothing, and inside them the legend hides bars."""
    width, height = fig.get_size_inches()
    fits = int(width * 72 / 5.6) - 12  # characters of "small" text (~5.6 pt each) in the figure's width
    labels = [textwrap.fill(label, fits) for label in labels]  # a dense baseline serving many settings is long
    longest = max((len(line) for label in labels for line in label.splitlines()), default=1)
    ncols = max(1, min(len(labels), int(width * 72 / (longest * 5.6 + 36))))
    lines = sum(label.count("\n") + 1 for label in labels)
    fig.set_size_inches(width, height + 0.2 * math.ceil(lines / ncols) + 0.3)
    fig.legend(handles, labels, loc="outside lower center", ncols=ncols, fontsize="small")


def _compression(sparsity: float) -> float:
    return 1.0 / max(1.0 - sparsity, 1e-6)


def dodge(n: int, xs: Sequence[float], log: bool = True) -> np.ndarray:
    """Factors (log axis) or offsets that spread ``n`` series around each x so error bars do not hide each other:
    symmetric about 1 (0), the spread of all ``n`` at most 30% of the smallest gap between neighbouring x."""
    pos = np.log10(sorted(set(xs))) if log else np.array(sorted(set(xs)), dtype=float)
    gap = float(np.min(np.diff(pos))) if len(pos) > 1 else (0.3 if log else 1.0)
    step = min(0.02 if log else gap, 0.3 * gap) / max(n - 1, 1) if n > 1 else 0.0
    shifts = (np.arange(n) - (n - 1) / 2) * step
    return 10 ** shifts if log else shifts


def accuracy_vs_sparsity(acc: dict[tuple[str, float], Stat], actual: dict[tuple[str, float], Stat],
                         baselines: dict[str, Stat], colour: dict[str, str]) -> Figure | None:
    """Test accuracy (mean +/- std over seeds) vs compression ratio 1/(1 - final actual sparsity), log x axis,
    one line per series, the series dodged around each x; x ticks at the targets, labelled with their exact
    sparsity; the dense baseline as a horizontal line with its +/- std band."""
    if not acc:
        return None
    fig = Figure(figsize=(9.5, 5.0), layout="constrained")
    ax = fig.subplots()
    series = list(dict.fromkeys(s for s, _ in acc))
    targets = sorted({t for _, t in acc})
    factors = dodge(len(series), [_compression(t) for t in targets])
    for i, name in enumerate(series):
        cells = [(t, acc[(name, t)], actual[(name, t)]) for s, t in acc if s == name]
        x = np.array([_compression(a.mean) for _, _, a in cells]) * factors[i]
        y = np.array([st.mean for _, st, _ in cells]) * 100
        err = np.nan_to_num(np.array([st.std for _, st, _ in cells]) * 100)
        ax.errorbar(x, y, yerr=err, marker="o", markersize=4, capsize=3, linewidth=1.4, color=colour[name],
                    label=f"{name} (n={min(st.n for _, st, _ in cells)}–{max(st.n for _, st, _ in cells)})"
                    if len({st.n for _, st, _ in cells}) > 1 else f"{name} (n={cells[0][1].n})")
    for i, (setting, base) in enumerate(baselines.items()):
        ax.axhline(base.mean * 100, color="black", linestyle=DENSE_STYLES[i % len(DENSE_STYLES)], linewidth=1,
                   label=f"dense{f' [{setting}]' if setting else ''} (n={base.n})")
        if base.n > 1:
            ax.axhspan((base.mean - base.std) * 100, (base.mean + base.std) * 100, color="black", alpha=0.08)
    ax.set_xscale("log")
    ax.set_xticks([_compression(t) for t in targets],
                  [f"{_compression(t):.4g}×\n{sparsity_text(t)}" for t in targets])
    ax.xaxis.set_minor_formatter("")
    ax.minorticks_off()
    if len(targets) == 1:
        ax.set_xlim(_compression(targets[0]) / 1.5, _compression(targets[0]) * 1.5)
    ax.set_xlabel("compression 1 / (1 - sparsity); ticks: target sparsity, points: final actual sparsity")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy vs sparsity (mean ± std over seeds; criteria offset at each target)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.grid(True, axis="x", which="major", alpha=0.3)
    legend_below(fig, *ax.get_legend_handles_labels())
    return fig


def sparsity_curves(groups: dict[str, dict[float, list[Run]]], colour: dict[str, str]) -> Figure | None:
    """One panel per series: the scheduled ``sparsity/target`` as a step function (it holds between pruning
    steps), ``sparsity/actual`` (zeros in the weights) as dots at the steps it was logged, and
    ``sparsity/masked`` as crosses where it differs from actual; one colour per target, mean over seeds."""
    groups = {s: {t: rs for t, rs in ts.items() if t > 0} for s, ts in groups.items()}
    groups = {s: ts for s, ts in groups.items()
              if any("sparsity/actual" in m for rs in ts.values() for r in rs for m in r.metrics)}
    if not groups:
        return None
    fig, axes = _grid(len(groups), 3, 4.6, 3.4)
    targets = sorted({t for ts in groups.values() for t in ts})
    cmap = colours([f"{t}" for t in targets])
    for ax, (series, by_target) in zip(axes, groups.items()):
        for target, runs in by_target.items():
            c = cmap[f"{target}"]
            steps, target_curve = mean_curve(runs, "sparsity/target")
            if len(steps):
                ax.step(steps, target_curve, where="post", color=c, linewidth=1.1, alpha=0.8)
            steps, actual_curve = mean_curve(runs, "sparsity/actual")
            ax.plot(steps, actual_curve, linestyle="none", marker="o", markersize=2.6, color=c,
                    label=f"{sparsity_text(target)} (n={len(runs)})")
            m_steps, masked_curve = mean_curve(runs, "sparsity/masked")
            if len(m_steps) == len(steps) and len(steps) and not np.allclose(masked_curve, actual_curve, atol=1e-9):
                differs = ~np.isclose(masked_curve, actual_curve, atol=1e-9)
                ax.plot(m_steps[differs], masked_curve[differs], linestyle="none", marker="x", markersize=4,
                        color=c)
        ax.set_title(series, color=colour.get(series, "black"))
        ax.set_xlabel("step")
        ax.set_ylabel("sparsity")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="lower right", title="target", title_fontsize="x-small")
    fig.suptitle("Sparsity over training: target (steps), actual = zeros in the weights (dots), "
                 "masked where it differs (×); mean over seeds")
    return fig


#: the dense baselines' line styles, one per setting (all black: the criteria have the colours)
DENSE_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)))


def eval_curves(groups: dict[str, dict[float, list[Run]]], colour: dict[str, str],
                dense: Sequence[Run] = ()) -> Figure | None:
    """One panel per target sparsity (> 0): ``eval/acc`` over steps, one line per series, mean over seeds; the
    dense runs' curve (black, dashed; one per setting, each its own dash) in every panel."""
    targets = sorted({t for ts in groups.values() for t in ts if t > 0})
    if not targets:
        return None
    fig, axes = _grid(len(targets), 3, 4.6, 3.4)
    by_setting: dict[str, list[Run]] = {}
    for run in dense:  # one curve per setting's dense runs (two learning rates are two baselines, never averaged)
        by_setting.setdefault(run.series, []).append(run)
    dense_curves = [(series, len(runs), *mean_curve(runs, "eval/acc")) for series, runs in sorted(by_setting.items())]
    drawn = False
    for ax, target in zip(axes, targets):
        for series, by_target in groups.items():
            steps, curve = mean_curve(by_target.get(target, []), "eval/acc")
            if len(steps):
                ax.plot(steps, curve * 100, marker=".", color=colour[series], label=series)
                drawn = True
        for i, (series, n, d_steps, d_curve) in enumerate(dense_curves):
            if len(d_steps):
                ax.plot(d_steps, d_curve * 100, color="black", linestyle=DENSE_STYLES[i % len(DENSE_STYLES)],
                        linewidth=1, label=f"{series} (n={n})")
        ax.set_title(f"target sparsity {sparsity_text(target)}")
        ax.set_xlabel("step")
        ax.set_ylabel("eval accuracy (%)")
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="x-small")
    fig.suptitle("Validation accuracy during training (mean over seeds)")
    return fig if drawn else None


def score_heatmaps(series: str, run: Run, maps: dict[str, ScoreHeatmap]) -> Figure | None:
    """One panel per layer: x = step, y = score bin (log10), colour = fraction of the layer's weights in the bin;
    the white line (right axis) is the fraction of zero scores, which the log bins cannot hold."""
    if not maps:
        return None
    fig, axes = _grid(len(maps), 3, 4.6, 3.3)
    vmax = max(float(np.nanmax(hm.fraction)) for hm in maps.values()) or 1.0
    norm = PowerNorm(0.5, 0.0, vmax)
    for ax, (layer, hm) in zip(axes, maps.items()):
        steps = hm.steps.astype(float)
        mesh = ax.pcolormesh(_step_edges(steps), hm.edges, hm.fraction, cmap="viridis", norm=norm, shading="flat")
        twin = ax.twinx()
        twin.plot(steps, hm.zeros, color="white", linewidth=2.4)
        twin.plot(steps, hm.zeros, color="crimson", linewidth=1.2)
        twin.set_ylim(0, 1)
        twin.set_ylabel("fraction of zero scores", color="crimson", fontsize="small")
        ax.set_title(f"{layer}  (zeros {hm.zeros[0]:.0%} → {hm.zeros[-1]:.0%})", fontsize="medium")
        ax.set_xlabel("step")
        ax.set_ylabel("log10 score" if hm.log_scale else "score")
    fig.colorbar(mesh, ax=axes, label="fraction of the layer's weights (sqrt scale)", shrink=0.9)
    fig.suptitle(f"Score distribution over steps: {series}  (run {run.name}, target {sparsity_text(run.target)})")
    return fig


def _step_edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges around logged steps (midpoints; the outer cells as wide as their neighbours)."""
    if len(steps) == 1:
        return np.array([steps[0] - 0.5, steps[0] + 0.5])
    mid = (steps[1:] + steps[:-1]) / 2
    return np.concatenate([[steps[0] - (mid[0] - steps[0])], mid, [steps[-1] + (steps[-1] - mid[-1])]])


def layer_sparsity_bars(cells: dict[tuple[str, float, str], Stat], colour: dict[str, str]) -> Figure | None:
    """One panel per target sparsity (> 0): grouped bars of the final sparsity of each layer, one bar per series,
    mean +/- std over seeds."""
    targets = sorted({t for _, t, _ in cells if t > 0})
    if not targets:
        return None
    series = list(dict.fromkeys(s for s, _, _ in cells))
    layers = list(dict.fromkeys(name for _, _, name in cells))
    fig, axes = _grid(len(targets), 2, max(5.0, 1.1 * len(layers) * max(1, len(series)) ** 0.5 + 2), 3.6)
    width = 0.8 / len(series)
    x = np.arange(len(layers))
    for ax, target in zip(axes, targets):
        for i, s in enumerate(series):
            stats = [cells.get((s, target, layer), Stat()) for layer in layers]
            ax.bar(x + (i - (len(series) - 1) / 2) * width, [st.mean for st in stats], width,
                   yerr=np.nan_to_num([st.std for st in stats]), color=colour[s], label=s, capsize=2)
        ax.axhline(target, color="black", linestyle="--", linewidth=1, label="target (the panel's)")
        ax.set_xticks(x, layers, rotation=45 if len(layers) > 6 else 0, ha="right" if len(layers) > 6 else "center")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("final sparsity")
        ax.set_title(f"target sparsity {sparsity_text(target)}")
        ax.grid(True, axis="y", alpha=0.3)
    legend_below(fig, *axes[0].get_legend_handles_labels())  # the same series in every panel: one legend
    fig.suptitle("Final sparsity per layer (mean ± std over seeds)")
    return fig


def agreement_heatmaps(agreement: Agreement, layers: Sequence[str]) -> Figure:
    """Criterion x criterion Jaccard matrices of kept weights for one (setting, target): ``all`` and each layer."""
    fig, axes = _grid(len(layers), 4, 3.6, 3.3)
    n = len(agreement.criteria)
    for ax, layer in zip(axes, layers):
        m = agreement.matrix(layer)
        im = ax.imshow(m, vmin=0, vmax=1, cmap="magma")
        for i in range(n):
            for j in range(n):
                if not math.isnan(m[i, j]):
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize="small",
                            color="black" if m[i, j] > 0.6 else "white")
        ax.set_xticks(range(n), agreement.criteria, rotation=45, ha="right", fontsize="small")
        ax.set_yticks(range(n), agreement.criteria, fontsize="small")
        ax.set_title(layer, fontsize="medium")
    fig.colorbar(im, ax=axes, label="Jaccard index of kept weights", shrink=0.8)
    density = 1.0 - agreement.target
    setting = f" [{agreement.setting}]" if agreement.setting else ""
    fig.suptitle(f"Criterion agreement at target sparsity {sparsity_text(agreement.target)}{setting}  "
                 f"(two random masks: {random_jaccard(density):.2f})")
    return fig
