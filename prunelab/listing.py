"""``prunelab list [criteria|ablations|patterns|distributions|schedules|regrowth|models|datasets]``: what is
registered, from the registries themselves (name, one line, paper), and the config options (``conf/<group>/*.yaml``)
that select them; an option that is no registered name (``criterion=rigl``: a preset of criterion, schedule,
distribution and regrowth) is listed with the first sentence of its file's leading comment."""
from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from .registry import Registry


def registries() -> dict[str, tuple[Registry, str]]:
    """Listing name -> (registry, config group). Importing the packages registers everything."""
    from . import data, models
    from .criteria import ABLATIONS, CRITERIA
    from .regrowth import UPDATERS
    from .schedule import DECAYS
    from .sparsity import DISTRIBUTIONS, PATTERNS

    return {
        "criteria": (CRITERIA, "criterion"), "ablations": (ABLATIONS, "ablation"), "patterns": (PATTERNS, "pattern"),
        "distributions": (DISTRIBUTIONS, "distribution"), "schedules": (DECAYS, "schedule"),
        "regrowth": (UPDATERS, "regrowth"), "models": (models.MODELS, "model"), "datasets": (data.DATASETS, "dataset"),
    }


def conf_dir() -> Path:
    from . import conf

    return Path(conf.__file__).parent


def render(kind: str, registry: Registry, group: str, width: int = 110) -> str:
    """One section: a line per registered name (summary, then its paper), then the group's config options."""
    lines = [f"{kind} ({registry.kind}):"]
    names = registry.names()
    pad = max((len(n) for n in names), default=0) + 2
    for name in names:
        summary, paper = registry.describe(name)
        text = summary + (f" [{paper}]" if paper else "")
        wrapped = textwrap.wrap(text, width - pad - 2) or [""]
        lines.append(f"  {name:<{pad}}{wrapped[0]}")
        lines += [f"  {'':<{pad}}{w}" for w in wrapped[1:]]
    if not names:
        lines.append("  (none registered yet)")
    files = sorted((conf_dir() / group).glob("*.yaml"))
    presets = [(f.stem, option_summary(f)) for f in files if f.stem not in names]
    if presets:
        lines.append(f"  other options (conf/{group}/NAME.yaml; presets set more than a registered name):")
        pad = max(len(n) for n, _ in presets) + 2
        for name, text in presets:
            wrapped = textwrap.wrap(text, width - pad - 4) or [""]
            lines.append(f"    {name:<{pad}}{wrapped[0]}")
            lines += [f"    {'':<{pad}}{w}" for w in wrapped[1:]]
    if files:
        lines.append(f"  config options: {group}={'|'.join(f.stem for f in files)}  (conf/{group}/)")
    return "\n".join(lines)


def option_summary(path: Path) -> str:
    """The first sentence of a config file's leading comment (after ``# @package``), or ''."""
    text = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            text.append(line.lstrip("#").strip())
    joined = " ".join(t for t in text if t)
    end = re.search(r"(?<!\bal)(?<!e\.g)(?<!i\.e)\.\s+(?=[A-Z])", joined)  # not "et al. 2020"
    return joined if end is None else joined[: end.start() + 1]


def main(argv: Sequence[str] | None = None) -> int:
    regs = registries()
    parser = argparse.ArgumentParser(prog="prunelab list", description="What is registered, from the registries "
                                     "themselves (name, one line, paper), and the config options that select it.")
    groups = {group: kind for kind, (_, group) in regs.items() if group != kind}
    parser.add_argument("kind", nargs="?", choices=sorted(regs), help="what to list (default: everything; a config "
                        "group's name, e.g. criterion, lists its kind)")
    args = parser.parse_args([groups.get(a, a) for a in (sys.argv[1:] if argv is None else argv)])
    kinds = [args.kind] if args.kind else list(regs)
    print("\n\n".join(render(k, *regs[k]) for k in kinds))
    return 0
