"""The W&B workspace (``wandb_workspaces.workspaces``) and report (``wandb_workspaces.reports.v2``) of a
comparison, and their JSON specs (W&B's own serialisation: ``_to_model().model_dump(by_alias=True)``).

Building and serialising contact no server: the report's run sets name no project of their own (they are the
report's) unless ``resolve_projects`` is set, which looks each project up on the server (saving does that).
"""
from __future__ import annotations

from typing import Any

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.workspaces as ws
from omegaconf import OmegaConf
from wandb_workspaces import expr

from .comparison import CRITERION, DERIVED_CONFIG, SEED, STEP, TARGET, Comparison
from .panels import Part, parts
from .runs import EXECUTION_CONFIG

#: runs-table columns of the workspace (W&B's ``config:<key>.value`` form for nested config keys)
COLUMNS = ("config:criterion.value.criterion_type", "config:schedule.value.target_sparsity", "config:seed.value",
           "summary:compression", "summary:sparsity/actual", "summary:test/acc")


def run_filters(comp: Comparison, *more: Any) -> Any:
    """The comparison's runs (its group; for a sweep directory exactly its runs, by id) and ``more`` conditions."""
    out = [expr.Metric("Group") == comp.group]
    if comp.run_ids is not None:
        out.append(expr.Metric("ID").isin(list(comp.run_ids)))
    return expr.And(*out, *more)


def title(comp: Comparison) -> str:
    return f"{comp.group}: pruning criteria compared"[:128]


def describe(comp: Comparison) -> str:
    """One line: how many runs of which criteria, targets and seeds."""
    crit, targets, seeds = comp.criteria(), comp.targets(), comp.seeds()
    dense = any(r.config_value(TARGET) == 0 for r in comp.runs)
    return (f"{len(comp.runs)} runs of W&B group {comp.group} in project {comp.project}: criteria {', '.join(crit)}; "
            f"target sparsities {', '.join(f'{t:g}' for t in targets) or 'none'}"
            f"{' and dense baselines' if dense else ''}; seeds {', '.join(map(str, seeds))}.")


def workspace(comp: Comparison, sections: list[Part] | None = None) -> ws.Workspace:
    """The workspace: one section per :class:`~.panels.Part` (its text in a markdown panel first), runs grouped by
    criterion (and any varied axis)."""
    sections = parts(comp) if sections is None else sections
    columns = [c for c in COLUMNS if _column_logged(comp, c)]
    return ws.Workspace(
        entity=comp.entity, project=comp.project, name=f"prunelab: {comp.group}",
        sections=[ws.Section(name=p.name, panels=[wr.MarkdownPanel(markdown=p.text + p.note), *p.panels],
                             is_open=True, panel_settings=ws.SectionPanelSettings(x_axis=STEP)) for p in sections],
        settings=ws.WorkspaceSettings(x_axis=STEP, max_runs=max(10, len(comp.runs)), group_by_prefix="first"),
        runset_settings=ws.RunsetSettings(filters=run_filters(comp), pinned_columns=columns,
                                          groupby=[expr.Config(k) for k in [CRITERION, *comp.axes()]]),
    )


def _column_logged(comp: Comparison, column: str) -> bool:
    section, key = column.split(":", 1)
    if section == "summary":
        return comp.in_summary(key)
    return any(r.config_value(key.replace(".value", "")) is not None for r in comp.runs)


def report(comp: Comparison, sections: list[Part] | None = None, resolve_projects: bool = False) -> wr.Report:
    """The report: title, description, the sweep's command and config, then each section's text and grids."""
    sections = parts(comp) if sections is None else sections
    blocks: list[Any] = [wr.TableOfContents(), wr.P(describe(comp))]
    if comp.command:
        blocks += [wr.H2("Command"), wr.MarkdownBlock(text=f"```bash\n{comp.command}\n```")]
    blocks += [wr.H2("Configuration"), wr.P("Swept (one run per combination), then what every run shares:"),
               wr.CodeBlock(code=sweep_config_yaml(comp).splitlines(), language="yaml")]
    where = dict(entity=comp.entity, project=comp.project) if resolve_projects else {}
    for part in sections:
        blocks += [wr.H2(part.name), wr.P(part.text)]
        for grid in part.grids:
            if grid.label:
                blocks.append(wr.H3(grid.label))
            runset = wr.Runset(name=grid.label or comp.group, filters=run_filters(comp, *grid.filters),
                               groupby=[f"config.{k}" for k in grid.groupby], **where)
            blocks.append(wr.PanelGrid(runsets=[runset], panels=grid.panels))
    return wr.Report(entity=comp.entity, project=comp.project, title=title(comp), description=describe(comp),
                     blocks=blocks, width="fluid")


def sweep_config_yaml(comp: Comparison) -> str:
    """The swept keys with their values, then the config every run shares (nested YAML)."""
    swept = "\n".join(swept_line(comp, k, v) for k, v in comp.swept().items()) or "# (a single run)"
    chosen = "".join(f"{k}: {{{', '.join(f'{m}: {v}' for m, v in by.items())}}}\n" for k, by in comp.chosen.items())
    first = {k: v for k, v in comp.runs[0].config.items() if k not in EXECUTION_CONFIG}
    shared = OmegaConf.to_yaml(OmegaConf.create(_without(first, set(comp.varied()) | {SEED, CRITERION, TARGET,
                                                                                     *DERIVED_CONFIG})))
    return f"# swept\n{swept}\n" + (f"# set by each method\n{chosen}" if chosen else "") + f"# shared\n{shared}"


def swept_line(comp: Comparison, key: str, values: list[Any]) -> str:
    """``key: [values]``; a key that only some methods have (a criterion's own option) says which, and the runs
    without it add no ``None`` (``criterion.alpha: [0.5, 0.9]  # snip_momentum only``)."""
    holders = sorted({str(r.config_value(CRITERION)) for r in comp.runs if r.config_value(key) is not None
                      and r.config_value(TARGET) != 0})
    only = f"  # {', '.join(holders)} only" if holders and set(holders) != set(comp.criteria()) else ""
    return f"{key}: [{', '.join(str(v) for v in values if v is not None or not only)}]{only}"


def _without(d: dict[str, Any], drop: set[str], prefix: str = "") -> dict[str, Any]:
    """``d`` without the dotted keys in ``drop`` (and without the sections that leaves empty)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if key in drop:
            continue
        if isinstance(v, dict):
            v = _without(v, drop, key + ".")
            if not v:
                continue
        out[k] = v
    return out


def specs(comp: Comparison, resolve_projects: bool = False) -> dict[str, Any]:
    """``{"workspace": ..., "report": ...}``: both specs as W&B serialises them, plus what they were built from."""
    sections = parts(comp)
    w, r = workspace(comp, sections), report(comp, sections, resolve_projects)
    return {
        "prunelab": {"group": comp.group, "project": comp.project, "entity": comp.entity, "source": comp.source,
                     "runs": [x.id for x in comp.runs], "sections": [p.name for p in sections]},
        "workspace": w._to_model().model_dump(mode="json", by_alias=True, exclude_none=True),
        "report": r._to_model().model_dump(mode="json", by_alias=True, exclude_none=True),
    }
