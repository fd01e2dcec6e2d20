"""``prunelab dashboard`` and the logging it relies on, from real offline runs of a small sweep through the real CLI.

Everything is read back with W&B's own reader (``wandb leet inspect``), never with the dashboard's code; the
workspace and report are W&B's own objects (``wandb-workspaces``), serialised by W&B's own models. Only the
server is absent: no credentials anywhere.
"""
from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import torch

from wandbkit import clean_env, history, inspect_records, inspect_summary, offline_dirs, run_app, run_record

pytest.importorskip("wandb_workspaces")

GROUP = "dash_test"
CRITERIA = ["magnitude", "snip"]
MAX_STEPS = 20
SWEEP = [  # 2 criteria x 0.75 x 2 seeds + the dense baseline once per seed = 6 runs of 20 steps, pruning at 5, 10, 15
    "-m", "criterion=magnitude,snip", "schedule.target_sparsity=0.0,0.75", "seed=0,1", f"group={GROUP}",
    f"trainer.max_steps={MAX_STEPS}", "schedule.start_step=5", "schedule.end_step=15",
    "schedule.pruning_frequency=5", "trainer.eval_every=10", "trainer.progress=none", "trainer.num_threads=1",
]
SECTIONS = ["Comparison", "Training curves", "Sparsity", "Score distributions", "Mask churn", "Runs"]
CRITERION_GROUP = {"section": "config", "name": "method.value"}  # W&B's address of the method (config key)


# --- W&B's view of the runs ------------------------------------------------------------------------------------

def flatten(d: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out.add(prefix + k)
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
    return out


def config_path(name: str) -> str:
    """W&B's address of a nested config key (``a.value.b``, ``seed.value``) as the config's own path (``a.b``)."""
    parts = name.split(".")
    assert len(parts) >= 2 and parts[1] == "value", f"{name}: not W&B's nested-config form a.value.b"
    return ".".join([parts[0], *parts[2:]])


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("dash")
    sweep_dir = base / "sweep"
    env = clean_env(base / "home", WANDB_MODE="offline", WANDB_SILENT="true")
    proc = run_app([*SWEEP, f"hydra.sweep.dir={sweep_dir}"], cwd=base, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = []
    for job in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        (wdir,) = offline_dirs(job)
        records = inspect_records(wdir)
        s = inspect_summary(wdir)
        runs.append({"dir": job, "records": records, "run": run_record(records), "rows": history(records),
                     "config": s["config"], "summary": s["summary"],
                     "local": json.loads((job / "summary.json").read_text()), "masks": torch.load(job / "masks.pt"),
                     "metrics": [json.loads(ln) for ln in (job / "metrics.jsonl").read_text().splitlines()]})
    assert len(runs) == 6  # the sweeper runs the dense baseline once per seed, not once per criterion
    logged = {"history": set(), "summary": set(), "config": set()}
    histograms = set()
    for r in runs:
        for row in r["rows"]:
            logged["history"] |= {k[: -len("._type")] if k.endswith("._type") else k for k in row}
            histograms |= {k[: -len("._type")] for k, v in row.items() if k.endswith("._type") and v == "histogram"}
        logged["summary"] |= flatten(r["summary"])
        logged["config"] |= flatten(r["config"])
    return {"base": base, "dir": sweep_dir, "env": env, "runs": runs, "logged": logged, "histograms": histograms}


@pytest.fixture(scope="module")
def spec(sweep) -> dict[str, Any]:
    out = sweep["base"] / "out" / "dashboard.json"
    proc = run_app(["dashboard", str(sweep["dir"]), "--json", str(out), "--preview", str(out.parent / "preview")],
                   cwd=sweep["base"], env=sweep["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


# --- the spec's references, read from W&B's serialisation ---------------------------------------------------------

def panel_refs(panel: dict[str, Any]) -> list[tuple[str, str]]:
    """``(where, key)`` for every key a panel refers to: where is history, summary or config."""
    cfg, kind = panel["config"], panel["viewType"]
    if kind == "Run History Line Plot":
        refs = [("history", m) for m in cfg["metrics"]]
        if cfg.get("xAxis") not in (None, "_step"):
            refs.append(("history", cfg["xAxis"]))
        if cfg.get("groupBy"):
            refs.append(("config", config_path(cfg["groupBy"])))
        return refs
    if kind == "Scatter Plot":
        refs = []
        for axis in ("xAxis", "yAxis", "zAxis"):
            if axis in cfg:
                section, key = cfg[axis].split(":", 1)
                refs.append((section, config_path(key) if section == "config" else key))
        return refs
    assert kind in ("Run Comparer", "Markdown Panel"), f"a panel type this test does not check: {kind}"
    return []


def runset_refs(rs: dict[str, Any], run_ids: set[str]) -> list[tuple[str, str]]:
    refs = []
    for g in rs["grouping"]:
        assert g["section"] == "config", g
        refs.append(("config", config_path(g["name"])))
    for f in rs["filters"]["filters"]:
        key = f["key"]
        if key["section"] == "config":  # W&B's filters name a nested key by its own path
            refs.append(("config", key["name"]))
        elif key == {"section": "run", "name": "group"}:
            assert f["value"] == GROUP
        else:
            assert key == {"section": "run", "name": "name"} and set(f["value"]) <= run_ids, f
    for col in rs.get("runFeed", {}).get("columnPinned", {}):
        section, key = col.split(":", 1)
        if section != "run":
            refs.append((section, config_path(key) if section == "config" else key))
    return refs


def workspace_sections(spec: dict[str, Any], text: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Section name -> its panels (without the text panel that opens each section, unless ``text``)."""
    return {s["name"]: [p for p in s["panels"] if text or p["viewType"] != "Markdown Panel"]
            for s in spec["workspace"]["spec"]["section"]["panelBankConfig"]["sections"]}


def report_grids(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(section heading, panel grid)`` for every grid of the report."""
    out, heading = [], None
    for block in spec["report"]["spec"]["blocks"]:
        if block["type"] == "heading" and block["level"] == 2:
            heading = block["children"][0]["text"]
        elif block["type"] == "panel-grid":
            out.append((heading, block["metadata"]))
    return out


def selected(rs: dict[str, Any], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs a run set's config and run-id filters select (evaluated on W&B's record of each run's config and
    id)."""
    def value(config: dict[str, Any], path: str) -> Any:
        for part in path.split("."):
            config = config.get(part) if isinstance(config, dict) else None
        return config

    def ok(run: dict[str, Any], f: dict[str, Any]) -> bool:
        if f["key"]["section"] == "config":
            return value(run["config"], f["key"]["name"]) == f["value"]
        if f["key"] == {"section": "run", "name": "name"}:
            assert f["op"] == "IN"
            return run["run"]["run_id"] in f["value"]
        return True  # the group

    return [r for r in runs if all(ok(r, f) for f in rs["filters"]["filters"])]


# --- tests ----------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_panel_key_is_logged_by_the_runs(sweep, spec):
    run_ids = {r["run"]["run_id"] for r in sweep["runs"]}
    refs = [ref for panels in workspace_sections(spec, text=True).values() for p in panels for ref in panel_refs(p)]
    refs += runset_refs(spec["workspace"]["spec"]["section"]["runSets"][0], run_ids)
    for _, grid in report_grids(spec):
        refs += [ref for p in grid["panelBankSectionConfig"]["panels"] for ref in panel_refs(p)]
        refs += [ref for rs in grid["runSets"] for ref in runset_refs(rs, run_ids)]
    assert len(refs) > 50
    missing = sorted({(where, key) for where, key in refs if key not in sweep["logged"][where]})
    assert missing == []
    # the histogram panels plot keys that W&B holds as histograms
    hist_panels = {m for p in workspace_sections(spec)["Score distributions"] for m in p["config"]["metrics"]
                   if m.startswith("scores/")}
    assert hist_panels == {"scores/fc1", "scores/fc2", "scores/all"} <= sweep["histograms"]


@pytest.mark.slow
def test_sections_grouping_and_report(sweep, spec):
    sections = workspace_sections(spec)
    assert list(sections) == SECTIONS
    assert all(ps[0]["viewType"] == "Markdown Panel" and ps[0]["config"]["value"]
               for ps in workspace_sections(spec, text=True).values())  # each section opens with its text
    ws_runset = spec["workspace"]["spec"]["section"]["runSets"][0]
    assert ws_runset["grouping"] == [CRITERION_GROUP]
    # W&B's nested-config address works because the run config is nested, not flat; the method is logged with it
    assert all(r["config"]["criterion"]["criterion_type"] in CRITERIA for r in sweep["runs"])
    assert all(r["config"]["method"] == ("dense" if r["config"]["schedule"]["target_sparsity"] == 0 else
                                         r["config"]["criterion"]["criterion_type"]) for r in sweep["runs"])
    (acc,) = [p["config"] for p in sections["Comparison"] if p["config"].get("xAxis") == "compression"]
    assert (acc["metrics"], acc["groupBy"], acc["groupAgg"], acc["groupArea"]) == (
        ["test/acc"], "method.value", "mean", "stddev")
    curves = {m for p in sections["Training curves"] for m in p["config"]["metrics"]}
    assert curves == {"eval/acc", "eval/loss", "train/acc", "train/loss"}
    plotted = [m for p in sections["Sparsity"] for m in p["config"]["metrics"]]
    assert set(plotted) == {"sparsity/target", "sparsity/actual", "sparsity/masked", "sparsity/fc1", "sparsity/fc2",
                            "sparsity/masked/fc1", "sparsity/masked/fc2"}
    assert len(plotted) == len(set(plotted))  # a layer's masked fraction is not taken for a layer of its own
    assert [p["config"]["metrics"] for p in sections["Mask churn"]] == [["masks/changed"]]
    grouped = [p for ps in sections.values() for p in ps if p["viewType"] == "Run History Line Plot"
               and not p["config"]["metrics"][0].startswith("scores/")]
    assert all(p["config"]["groupBy"] == "method.value" for p in grouped)
    assert all(p["config"].get("xAxis") in ("trainer/step", "compression") for p in grouped)
    assert [p["viewType"] for p in sections["Runs"]] == ["Run Comparer"]

    report = spec["report"]
    assert report["displayName"] == f"{GROUP}: pruning criteria compared"
    blocks = report["spec"]["blocks"]
    headings = [b["children"][0]["text"] for b in blocks if b["type"] == "heading" and b["level"] == 2]
    assert headings == ["Command", "Configuration", *SECTIONS]
    (command,) = [b["content"] for b in blocks if b["type"] == "markdown-block"]
    assert "prunelab -m criterion=magnitude,snip schedule.target_sparsity=0.0,0.75 seed=0,1" in command
    (code,) = [b for b in blocks if b["type"] == "code-block"]
    config = "\n".join(c["text"] for c in code["children"][0]["children"])
    assert "criterion.criterion_type: [magnitude, snip]" in config and "seed: [0, 1]" in config
    assert f"max_steps: {MAX_STEPS}" in config
    grids = report_grids(spec)
    assert {h for h, _ in grids} == set(SECTIONS)
    assert all(rs["grouping"] == [CRITERION_GROUP] for _, g in grids for rs in g["runSets"])
    # one score grid per criterion, each selecting exactly one run of that criterion (W&B draws one run's histograms)
    score_grids = [g for h, g in grids if h == "Score distributions"]
    picked = [selected(g["runSets"][0], sweep["runs"]) for g in score_grids]
    assert [[r["config"]["criterion"]["criterion_type"] for r in p] for p in picked] == [[c] for c in CRITERIA]


@pytest.mark.slow
def test_specs_load_back_into_wandbs_classes(spec):
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces.reports.v2 import internal as report_internal
    from wandb_workspaces.workspaces import internal as ws_internal

    w = ws.Workspace._from_model(ws_internal.View.model_validate(spec["workspace"]))
    assert [s.name for s in w.sections] == SECTIONS and w.settings.x_axis == "trainer/step"
    r = wr.Report._from_model(report_internal.ReportViewspec.model_validate(spec["report"]))
    assert sum(isinstance(b, wr.PanelGrid) for b in r.blocks) == len(report_grids(spec))


@pytest.mark.slow
def test_offline_preview_draws_every_report_panel(sweep, spec):
    page = (sweep["base"] / "out" / "preview" / "index.html").read_text()
    panels = [p for _, g in report_grids(spec) for p in g["panelBankSectionConfig"]["panels"]]
    drawn = [p for p in panels if p["viewType"] != "Run Comparer"]
    assert page.count("<img src=") == len(drawn) and len(drawn) > 10
    assert all((sweep["base"] / "out" / "preview" / f"panel-{i:03d}.png").stat().st_size > 1000
               for i in range(1, len(panels) + 1) if panels[i - 1]["viewType"] != "Run Comparer")
    assert page.count("<table>") == 1  # the run comparer
    assert all(f"<h2>{name}</h2>" in page for name in SECTIONS)
    # the grids' run sets select what the report says: all 6 runs, 4 per pruning target, 1 per score grid
    counts = [int(n) for n in re.findall(r"<p class='runs'>(\d+) runs?</p>", page)]
    assert counts == [len(selected(g["runSets"][0], sweep["runs"])) for _, g in report_grids(spec)]
    assert sorted(set(counts)) == [1, 4, 6]


@pytest.mark.slow
def test_no_grid_averages_runs_of_different_configs(sweep):
    """A sweep that varies the distribution for every criterion, and snip's own option for snip alone: W&B groups a
    panel's runs by the method only, so each report grid must hold one distribution and one value of snip's
    option (magnitude, which has no such option, in both), every grid the dense baselines; the workspace groups
    the runs table by both keys and says to filter by them."""
    from prunelab.dashboard.comparison import Comparison
    from prunelab.dashboard.runs import read_sweep_dir
    from prunelab.dashboard.spec import specs

    runs = read_sweep_dir(sweep["dir"])
    views = copy.deepcopy(sweep["runs"])  # W&B's record of each run, edited as the runs are
    by_id = {v["run"]["run_id"]: v for v in views}
    for r in runs:
        r.config = copy.deepcopy(r.config)
        crit, seed = r.config["criterion"]["criterion_type"], r.config["seed"]
        target = r.config["schedule"]["target_sparsity"]
        if target:
            r.config["distribution"]["name"] = ["global", "uniform"][seed]
        if crit == "snip" and target:
            r.config["criterion"]["alpha"] = 0.5 if seed == 0 else 0.9  # a fake option, one value per seed
        by_id[r.id]["config"] = r.config
    doc = specs(Comparison.from_runs(runs, source="test"))
    assert doc["workspace"]["spec"]["section"]["runSets"][0]["grouping"] == [
        CRITERION_GROUP, {"section": "config", "name": "criterion.value.alpha"},
        {"section": "config", "name": "distribution.value.name"}]
    texts = [p["config"]["value"] for p in workspace_sections(doc, text=True)["Training curves"]
             if p["viewType"] == "Markdown Panel"]
    assert "also varies criterion.alpha, distribution.name" in texts[0]
    grids = [g for h, g in report_grids(doc) if h == "Comparison"]
    picked = [selected(g["runSets"][0], views) for g in grids]
    shapes = [sorted((v["config"]["method"], v["config"]["schedule"]["target_sparsity"], v["config"]["seed"])
                     for v in p) for p in picked]
    dense = [("dense", 0.0, 0), ("dense", 0.0, 1)]
    assert shapes == [sorted(dense + [("magnitude", 0.75, 0), ("snip", 0.75, 0)]),
                      sorted(dense + [("magnitude", 0.75, 1), ("snip", 0.75, 1)])]
    for grid, p in zip(grids, picked):  # within a grid no method mixes two distributions or two alphas
        for method in ("magnitude", "snip"):
            pruned = [v["config"] for v in p
                      if v["config"]["method"] == method and v["config"]["schedule"]["target_sparsity"]]
            assert len({(c["distribution"]["name"], c["criterion"].get("alpha")) for c in pruned}) == 1
    labels = [g.get("runSets")[0]["name"] for g in grids]
    assert labels == ["distribution.name=global, snip (alpha=0.5)", "distribution.name=uniform, snip (alpha=0.9)"]
    # the per-target sections hold the same split, the score grids one run per method and variant
    curves = [selected(g["runSets"][0], views) for h, g in report_grids(doc) if h == "Training curves"]
    assert [len(p) for p in curves] == [2, 2]
    scores = [selected(g["runSets"][0], views) for h, g in report_grids(doc) if h == "Score distributions"]
    assert [[(v["config"]["method"], v["config"]["criterion"].get("alpha")) for v in p] for p in scores] == [
        [("magnitude", None)], [("snip", 0.5)], [("snip", 0.9)]]


def test_a_method_without_variants_joins_every_variant_and_dense_runs_serve_their_setting():
    """A learning rate swept for every run (the dense baselines too) and snip_momentum's alpha: four grids, one per
    learning rate and alpha; magnitude in the two of its learning rate, the dense runs of that learning rate
    in both, never those of the other."""
    from prunelab.dashboard.comparison import Comparison
    from prunelab.dashboard.runs import LoggedRun

    made: list[LoggedRun] = []

    def run(method: str, target: float, seed: int, lr: float, alpha: float | None = None) -> LoggedRun:
        criterion = {"criterion_type": method, "ablation": "none", **({"alpha": alpha} if alpha else {})}
        made.append(LoggedRun(id=f"r{len(made)}", group="g", project="p", config={
            "seed": seed, "method": method, "criterion": criterion, "schedule": {"target_sparsity": target},
            "optimizer": {"lr": lr}}))
        return made[-1]

    for seed in (0, 1):
        for lr in (0.1, 0.01):
            run("magnitude", 0.0, seed, lr)
            run("magnitude", 0.9, seed, lr)
            for alpha in (0.5, 0.9):
                run("snip_momentum", 0.9, seed, lr, alpha)
    comp = Comparison.from_runs(made)
    assert comp.axes() == ["criterion.alpha", "optimizer.lr"]
    cells = {c.label: sorted((r.config["method"], r.config["schedule"]["target_sparsity"], r.config["optimizer"]["lr"],
                              r.config["criterion"].get("alpha")) for r in made if r.id in c.run_ids)
             for c in comp.cohorts}
    assert list(cells) == [f"optimizer.lr={lr}, snip_momentum (alpha={a})" for lr in (0.01, 0.1) for a in (0.5, 0.9)]
    for label, members in cells.items():
        lr, alpha = float(label.split("=")[1].split(",")[0]), float(label.split("alpha=")[1].rstrip(")"))
        assert members == sorted([("dense", 0.0, lr, None)] * 2 + [("magnitude", 0.9, lr, None)] * 2 +
                                 [("snip_momentum", 0.9, lr, alpha)] * 2)
    one = Comparison.from_runs([r for r in made if r.config["optimizer"]["lr"] == 0.1 and
                                r.config["criterion"].get("alpha") in (None, 0.5)])
    assert [c.label for c in one.cohorts] == [""] and one.axes() == []  # nothing else varies: one cohort
    # the pruned runs of one learning rate with the dense runs of both: the other rate's dense runs are no
    # baseline of theirs, and have a cohort of their own (one cohort of all would average the two dense lines)
    mixed = Comparison.from_runs([r for r in made if r.config["optimizer"]["lr"] == 0.1 and
                                  r.config["criterion"].get("alpha") in (None, 0.5) or
                                  r.config["schedule"]["target_sparsity"] == 0])
    held = {c.label: sorted((r.config["method"], r.config["optimizer"]["lr"]) for r in made if r.id in c.run_ids)
            for c in mixed.cohorts}
    assert held == {"optimizer.lr=0.1": [("dense", 0.1)] * 2 + [("magnitude", 0.1)] * 2 + [("snip_momentum", 0.1)] * 2,
                    "optimizer.lr=0.01 (dense runs only)": [("dense", 0.01)] * 2}
    from prunelab.dashboard.spec import sweep_config_yaml

    swept = sweep_config_yaml(comp).split("# swept\n")[1].split("# shared")[0]
    assert "criterion.alpha: [0.5, 0.9]  # snip_momentum only\n" in swept and "optimizer.lr: [0.01, 0.1]\n" in swept


@pytest.mark.slow
def test_dense_baselines_compression_and_step_axis_as_logged(sweep):
    for r in sweep["runs"]:
        target = r["config"]["schedule"]["target_sparsity"]
        criterion = r["config"]["criterion"]["criterion_type"]
        assert r["run"]["job_type"] == ("dense" if target == 0 else criterion)
        assert r["run"]["run_group"] == GROUP
        # compression and the final sparsities reach W&B's summary, computed from the final masks by hand
        zeros = sum(int((~m).sum()) for m in r["masks"].values())
        total = sum(m.numel() for m in r["masks"].values())
        s = r["summary"]
        assert s["sparsity/actual"] == pytest.approx(zeros / total, abs=1e-12)
        assert s["compression"] == pytest.approx(total / (total - zeros), rel=1e-12)
        assert s["compression"] == pytest.approx(1.0 if target == 0 else 4.0, rel=1e-3)
        assert s["sparsity/masked"] == pytest.approx(zeros / total, abs=1e-12)
        assert s["sparsity/target"] == target
        # one step axis: trainer/step in every row and W&B's _step equal to it, the last row included
        rows = r["rows"]
        assert all(row["trainer/step"] == row["_step"] for row in rows)
        (last,) = [row for row in rows if "final/sparsity_table._type" in row]
        assert last is rows[-1] and last["trainer/step"] == MAX_STEPS - 1
        assert "masks/fc1._type" in last and "eval/acc" in last  # the last step's row holds the final record
        for key in ("test/acc", "compression"):
            assert last[key] == s[key] == r["local"][key]
            assert r["metrics"][-1][key] == last[key]  # metrics.jsonl's last record holds the same
        assert r["metrics"][-1]["step"] == MAX_STEPS - 1


def test_without_credentials_saving_is_one_line_and_exit_2(tmp_path):
    env = clean_env(tmp_path / "home")
    for args in (["dashboard", str(tmp_path / "no-such-sweep")],  # checked before anything else
                 ["dashboard", "--group", GROUP, "--json", str(tmp_path / "g.json")]):  # a group: read from W&B
        proc = run_app(args, cwd=tmp_path, env=env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("prunelab: error: WANDB_API_KEY=None: W&B credentials")
    assert not (tmp_path / "g.json").exists()


def test_bad_source_is_one_line_and_exit_2_before_any_file(tmp_path):
    env = clean_env(tmp_path / "home")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out" / "d.json"
    for args, key in ((["dashboard", str(tmp_path / "empty"), "--json", str(out)], "sweep="),
                      (["dashboard", "--json", str(out)], "sweep=None")):
        proc = run_app(args, cwd=tmp_path, env=env, timeout=120)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"prunelab: error: {key}"), lines
    assert not out.parent.exists()


def test_job_type_is_dense_for_a_dense_baseline():
    from prunelab.tracking.build import job_type, wandb_config

    def cfg(target: float, job: str | None = None, scope: str | None = None) -> dict[str, Any]:
        return {"criterion": {"criterion_type": "snip"}, "schedule": {"target_sparsity": target},
                "logger": {"job_type": job}, "distribution": {"name": "global"}, "pattern": {"scope": scope}}

    assert job_type(cfg(0.0)) == "dense" and job_type(cfg(0)) == "dense"
    assert job_type(cfg(0.5)) == "snip"
    assert job_type(cfg(0.0, job="mine")) == "mine"  # an explicit logger.job_type wins
    # the method, not the criterion of the initial masks: rigl and static_erk prune them with random
    assert job_type({**cfg(0.9), "criterion": {"criterion_type": "random"}, "regrowth": {"name": "rigl"}}) == "rigl"
    assert job_type({**cfg(0.9), "criterion": {"criterion_type": "random", "label": "static_erk"},
                     "regrowth": {"name": "none"}}) == "static_erk"
    config = wandb_config(cfg(0.0, scope="local"))
    assert config["logger"]["job_type"] == "dense"
    # the config's method, what every panel groups by, is dense too: its own line at compression 1 (it was the
    # criterion's, so the dense point was the first of that criterion's line and no other line had one)
    assert config["method"] == "dense" and wandb_config(cfg(0.5))["method"] == "snip"
    # the tags name the method too (a tag filter for rigl finds rigl, not every run of the random criterion), even
    # where logger.job_type says something else
    from prunelab.tracking.build import run_tags

    rigl = {**cfg(0.9, job="mine"), "criterion": {"criterion_type": "random"}, "regrowth": {"name": "rigl"}}
    assert "method:rigl" in run_tags(rigl) and "criterion:random" in run_tags(rigl)
    assert "method:dense" in run_tags(cfg(0.0)) and "method:snip" in run_tags(cfg(0.5))
    assert config["distribution"]["name"] == "uniform"  # what a panel groups by: the distribution in force


def test_runs_are_grouped_by_method_also_when_logged_before_it():
    """rigl, set and static_erk all prune their initial masks with the random criterion: grouped by criterion type
    they were one line. The method is logged (``method``); a run logged before it gets it from its config here."""
    from prunelab.dashboard.comparison import Comparison
    from prunelab.dashboard.runs import LoggedRun

    def run(i: int, **config: Any) -> LoggedRun:
        return LoggedRun(id=f"r{i}", group="g", project="p", config={"seed": 0, **config})

    runs = [run(0, criterion={"criterion_type": "random"}, regrowth={"name": "rigl"}),  # before `method` was logged
            run(1, criterion={"criterion_type": "random", "label": "static_erk"}, regrowth={"name": "none"}),
            run(2, criterion={"criterion_type": "random"}, regrowth={"name": "set"}, method="set"),
            # a dense baseline logged while its method was its criterion's: the dense line, not magnitude's
            run(3, criterion={"criterion_type": "magnitude"}, schedule={"target_sparsity": 0.0}, method="magnitude")]
    comp = Comparison.from_runs(runs)
    assert comp.criteria() == ["rigl", "set", "static_erk"] and runs[3].config["method"] == "dense"


def test_what_a_method_chooses_for_itself_is_no_axis_of_the_sweep():
    """rigl's preset sets its own distribution and schedule: the sweep did not vary them, so the dashboard makes no
    comparison per distribution, and its score grids pick each criterion's own run (not one filtered on rigl's
    erk, which the other criteria never ran with); the config block lists them as set by each method. A
    distribution swept for every criterion stays an axis."""
    from prunelab.dashboard.comparison import Comparison
    from prunelab.dashboard.panels import score_distributions
    from prunelab.dashboard.runs import LoggedRun
    from prunelab.dashboard.spec import sweep_config_yaml

    def run(i: int, method: str, target: float, distribution: str, end: float) -> LoggedRun:
        return LoggedRun(id=f"r{i}", group="g", project="p", history={"scores/fc1": "histogram"},
                         config={"seed": 0, "method": method, "criterion": {"criterion_type": method},
                                 "schedule": {"target_sparsity": target, "end": end},
                                 "distribution": {"name": distribution}})

    runs = [run(0, "magnitude", 0.9, "global", 0.6), run(1, "taylor", 0.9, "global", 0.6),
            run(2, "rigl", 0.9, "erk", 0.0), run(3, "magnitude", 0.0, "global", 0.6)]
    comp = Comparison.from_runs(runs)
    assert comp.axes() == [] and set(comp.chosen) == {"distribution.name", "schedule.end"}
    assert "distribution.name" not in comp.swept()
    part = score_distributions(comp)
    assert [g.label for g in part.grids] == ["magnitude (target sparsity 0.9, seed 0)", "rigl (target sparsity 0.9, seed 0)",
                                            "taylor (target sparsity 0.9, seed 0)"]
    yaml = sweep_config_yaml(comp)
    chosen = yaml.split("# set by each method\n")[1].split("# shared")[0]
    assert "distribution.name: {magnitude: global, rigl: erk, taylor: global}\n" in chosen
    assert "distribution" not in yaml.split("# set by each method")[0]
    swept = [run(4 + i, m, 0.9, d, 0.6) for i, (m, d) in enumerate(
        [("magnitude", "global"), ("magnitude", "erk"), ("taylor", "global"), ("taylor", "erk")])]
    assert Comparison.from_runs(swept).axes() == ["distribution.name"]


@pytest.mark.slow
def test_an_empty_w_and_b_part_of_a_run_killed_at_once_is_left_out(sweep, tmp_path, capsys):
    """A run killed right after W&B began its file leaves a part with only the file's header; restarted in the same
    directory it logs a new W&B run beside it. The dashboard refused the whole comparison over that empty part; it
    leaves it out and says so."""
    import shutil

    from prunelab.dashboard.runs import read_sweep_dir

    copy_dir = tmp_path / "sweep"
    shutil.copytree(sweep["dir"], copy_dir)
    real = next(copy_dir.glob("*/wandb/offline-run-*/run-*.wandb"))
    stale = real.parent.parent / "offline-run-20261208_000000-zzzzzzzz" / "run-zzzzzzzz.wandb"
    stale.parent.mkdir()
    stale.write_bytes(real.read_bytes()[:7])  # the header W&B writes first, and nothing after it
    runs = read_sweep_dir(copy_dir)
    assert len(runs) == len(sweep["runs"])
    assert f"{stale} holds no W&B run record" in capsys.readouterr().err
