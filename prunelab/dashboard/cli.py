"""``prunelab dashboard``: the W&B workspace and report of a comparison, as code.

    prunelab dashboard SWEEP_DIR --json dashboard.json     # the specs, from the runs' W&B files; no server
    prunelab dashboard SWEEP_DIR --preview DIR             # the report's offline twin (DIR/index.html); no server
    prunelab dashboard SWEEP_DIR                           # saves both to W&B (after `wandb sync`)
    prunelab dashboard --group NAME [--project P]          # the runs of a W&B group, read from the server

Errors a user can fix are one line (``prunelab: error: ...``) and exit 2, before anything is read or written;
saving without W&B credentials is one of them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..tracking.wandb import wandb_credentials_available

EXIT_USAGE = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prunelab dashboard", description=(
        "Build the W&B workspace and report of a comparison: the runs of a sweep directory (their W&B files, "
        "offline or synced) or of a W&B group. With --json, write both specs to a file without contacting W&B; "
        "without it, save them to W&B (needs credentials: `wandb login` or WANDB_API_KEY)."))
    p.add_argument("sweep", nargs="?", type=Path, help="a sweep (or run) directory whose runs logged to W&B")
    p.add_argument("--group", help="a W&B group instead of a sweep directory (read from the server)")
    p.add_argument("--project", help="the W&B project (default: the runs' own; prunelab for --group)")
    p.add_argument("--entity", help="the W&B entity (default: the runs' logger.entity, else your default entity)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the workspace and report specs here; no server")
    p.add_argument("--preview", type=Path, metavar="DIR",
                   help="write the report's offline twin (DIR/index.html, panels drawn from the runs' local records; "
                        "a sweep directory only); no server")
    return p


def fail(error: ConfigError) -> int:
    print(f"prunelab: error: {str(error).splitlines()[0]}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    """Run ``prunelab dashboard`` with ``argv``; returns the exit code."""
    args = parser().parse_args(argv)
    if (args.sweep is None) == (args.group is None):
        return fail(ConfigError("sweep", None, "a sweep directory, or --group NAME (exactly one of them)"))
    if args.preview is not None and args.group is not None:
        return fail(ConfigError("--preview", str(args.preview), "with a sweep directory (its runs' local records)"))
    offline = args.json is not None or args.preview is not None
    if (not offline or args.group is not None) and not wandb_credentials_available():
        what = "reading a W&B group" if args.group is not None else "saving to W&B"
        return fail(ConfigError("WANDB_API_KEY", None, f"W&B credentials for {what} (`wandb login` or "
                                "WANDB_API_KEY); --json PATH with a sweep directory needs none"))
    try:
        import wandb_workspaces  # noqa: F401
    except ImportError:
        return fail(ConfigError("wandb-workspaces", "not installed", 'pip install "prunelab[dashboards]"'))
    try:
        comp = load(args)
        if not offline:
            save(comp)
            return 0
        from .spec import specs

        doc = specs(comp)
        if args.json is not None:
            write_specs(doc, args.json)
        if args.preview is not None:
            from .preview import render

            print(f"[prunelab] offline preview -> {render(doc, comp, args.preview)}", flush=True)
    except ConfigError as exc:
        return fail(exc)
    return 0


def load(args: argparse.Namespace) -> Any:
    """The comparison named on the command line."""
    from .comparison import Comparison, sweep_command
    from .runs import read_group, read_sweep_dir

    if args.group is not None:
        project = args.project or "prunelab"
        runs = read_group(args.group, project, args.entity)
        return Comparison.from_runs(runs, project=project, entity=runs[0].entity, source=f"W&B group {args.group}",
                                    by_id=False)
    runs = read_sweep_dir(args.sweep)
    return Comparison.from_runs(runs, project=args.project, entity=args.entity, command=sweep_command(args.sweep),
                                source=str(args.sweep))


def write_specs(doc: dict[str, Any], path: Path) -> None:
    """The specs as JSON, written through a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    info = doc["prunelab"]
    print(f"[prunelab] dashboard of {info['group']} ({len(info['runs'])} runs; sections: "
          f"{', '.join(info['sections'])}) -> {path}", flush=True)


def save(comp: Any) -> None:
    """Save the workspace and the report to W&B (the runs must be there: `wandb sync` offline runs first)."""
    import wandb

    from .panels import parts
    from .spec import report, workspace

    if not comp.entity:
        comp.entity = wandb.Api().default_entity
    sections = parts(comp)
    w = workspace(comp, sections).save()
    r = report(comp, sections, resolve_projects=True).save()
    print(f"[prunelab] workspace: {w.url}\n[prunelab] report: {r.url}", flush=True)
