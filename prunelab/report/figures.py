"""The figures of the offline report, drawn with matplotlib (Agg, no pyplot state): each function takes
aggregated data from :mod:`prunelab.report.data` and returns a :class:`~matplotlib.figure.Figure` (None when
there is nothing to draw)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.colors import PowerNorm
from matplotlib.figure import Figure

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


def _compression(sparsity: float) -> float:
    return 1.0 / max(1.0 - sparsity, 1e-6)


def accuracy_vs_sparsity(acc: dict[tuple[str, float], Stat], actual: dict[tuple[str, float], Stat],
                         baselines: dict[str, Stat], colour: dict[str, str]) -> Figure | None:
    """Test accuracy (mean +/- std over seeds) vs compression ratio 1/(1 - actual sparsity), log x axis; one line
    per series; the dense baseline as a horizontal line with its band."""
    if not acc:
        return None
    fig = Figure(figsize=(8.5, 5.0), layout="constrained")
    ax = fig.subplots()
    ticks: dict[float, float] = {}
    for series in dict.fromkeys(s for s, _ in acc):
        cells = [(t, acc[(s, t)], actual[(s, t)]) for s, t in acc if s == series]
        x = np.array([_compression(a.mean) for _, _, a in cells])
        y = np.array([st.mean for _, st, _ in cells]) * 100
        err = np.nan_to_num(np.array([st.std for _, st, _ in cells]) * 100)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colour[series], label=series)
        ax.fill_between(x, y - err, y + err, color=colour[series], alpha=0.12, linewidth=0)
        ticks.update({float(xi): a.mean for xi, (_, _, a) in zip(x, cells)})
    for setting, base in baselines.items():
        ax.axhline(base.mean * 100, color="black", linestyle="--", linewidth=1,
                   label=f"dense baseline{f' [{setting}]' if setting else ''} (n={base.n})")
        if base.n > 1:
            ax.axhspan((base.mean - base.std) * 100, (base.mean + base.std) * 100, color="black", alpha=0.08)
    ax.set_xscale("log")
    _compression_ticks(ax, ticks)
    ax.set_xlabel("compression ratio 1 / (1 - sparsity)  (final actual sparsity of the pruned layers)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy vs sparsity (mean ± std over seeds)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _compression_ticks(ax, ticks: dict[float, float]) -> None:
    """Label the x ticks at the measured points, merging points closer than 2% apart."""
    shown: list[float] = []
    for x in sorted(ticks):
        if not shown or x > shown[-1] * 1.02:
            shown.append(x)
    ax.set_xticks(shown, [f"{x:.3g}×\n{ticks[x]:.0%}" for x in shown])
    ax.xaxis.set_minor_formatter("")
    if len(shown) == 1:
        ax.set_xlim(shown[0] / 1.5, shown[0] * 1.5)


def sparsity_curves(groups: dict[str, dict[float, list[Run]]], colour: dict[str, str]) -> Figure | None:
    """One panel per series: ``sparsity/actual`` (solid) and ``sparsity/target`` (dashed) over steps, one colour
    per target sparsity, mean over seeds."""
    groups = {s: {t: rs for t, rs in ts.items() if t > 0} for s, ts in groups.items()}
    groups = {s: ts for s, ts in groups.items() if ts}
    if not groups:
        return None
    fig, axes = _grid(len(groups), 3, 4.6, 3.4)
    targets = sorted({t for ts in groups.values() for t in ts})
    cmap = colours([f"{t}" for t in targets])
    for ax, (series, by_target) in zip(axes, groups.items()):
        for target, runs in by_target.items():
            c = cmap[f"{target}"]
            steps, target_curve = mean_curve(runs, "sparsity/target")
            ax.step(steps, target_curve, where="post", color=c, linestyle="--", linewidth=1)
            steps, actual_curve = mean_curve(runs, "sparsity/actual")
            ax.plot(steps, actual_curve, color=c, linewidth=1.6, label=f"target {target:g} (n={len(runs)})")
        ax.set_title(series, color=colour.get(series, "black"))
        ax.set_xlabel("step")
        ax.set_ylabel("sparsity")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper left")
    fig.suptitle("Sparsity over training: actual (solid) and scheduled target (dashed), mean over seeds")
    return fig


def eval_curves(groups: dict[str, dict[float, list[Run]]], colour: dict[str, str]) -> Figure | None:
    """One panel per target sparsity: ``eval/acc`` over steps, one line per series, mean over seeds."""
    targets = sorted({t for ts in groups.values() for t in ts})
    if not targets:
        return None
    fig, axes = _grid(len(targets), 3, 4.6, 3.4)
    drawn = False
    for ax, target in zip(axes, targets):
        for series, by_target in groups.items():
            steps, curve = mean_curve(by_target.get(target, []), "eval/acc")
            if len(steps):
                ax.plot(steps, curve * 100, marker=".", color=colour[series], label=series)
                drawn = True
        ax.set_title(f"target sparsity {target:g}")
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
    fig.suptitle(f"Score distribution over steps: {series}  (run {run.name}, target {run.target:g})")
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
        ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target:g}")
        ax.set_xticks(x, layers, rotation=45 if len(layers) > 6 else 0, ha="right" if len(layers) > 6 else "center")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("final sparsity")
        ax.set_title(f"target sparsity {target:g}")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize="x-small")
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
    fig.suptitle(f"Criterion agreement at target sparsity {agreement.target:g}{setting}  "
                 f"(two random masks: {random_jaccard(density):.2f})")
    return fig
