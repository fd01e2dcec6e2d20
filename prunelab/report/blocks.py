"""What the report's sections are made of (paragraphs, tables, figures) and the context every section builder gets;
the Markdown and HTML writers of :mod:`prunelab.report.render` render the same blocks."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..rundir import sparsity_text
from . import data as rd
from . import figures as rf

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


Block = str | Table | Image  # a str is a paragraph; `code` and **bold** spans are rendered in both formats


@dataclass
class Section:
    """A titled list of blocks; ``collapsed`` sections are folded (HTML ``<details>``) until opened."""

    title: str
    blocks: list[Block]
    collapsed: bool = False

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

    @cached_property
    def dense_seeds(self) -> dict[str, dict[Any, float]]:
        """``setting -> seed -> test accuracy`` of the dense runs (:func:`~prunelab.report.data.dense_seeds`)."""
        return rd.dense_seeds(self.runs)

    @cached_property
    def seed_table(self) -> dict[str, dict[str, dict[float, dict[int, float]]]]:
        """``setting -> criterion -> target -> seed -> test accuracy`` of the pruned runs."""
        return rd.seed_table(self.runs)

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


def compression(target: float) -> str:
    return f"{1 / max(1 - target, 1e-12):.4g}×"


def target_label(target: float) -> str:
    """``0.9375 (16×)``: the exact target sparsity and its compression ratio; ``0 (dense)``."""
    return "0 (dense)" if target == 0 else f"{sparsity_text(target)} ({compression(target)})"


def where(run: rd.Run, roots: Sequence[Path]) -> str:
    """The run directory relative to the report root that holds it."""
    for root in roots:
        root = root.resolve()
        if run.path == root or root in run.path.parents:
            return str(Path(root.name) / run.path.relative_to(root))
    return str(run.path)
