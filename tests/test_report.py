"""Offline report: tables equal the runs' summaries, paired statistics from them, the dense baseline once per
seed, Jaccard from masks, failed runs listed, a self-contained HTML page that fits a 1400 px window and a phone in
headless Chromium. One small real-data multirun (Fashion-MNIST, LeNet-300-100: 3 criteria x {0, 0.8} x 2 seeds,
the dense baseline once per seed: 8 jobs) feeds the slow tests; hand-made run directories feed the fast ones."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from browser import layout_facts, screenshot
from prunelab import report
from prunelab.report import figures as rf
from prunelab.report import data as rd
from prunelab.report.data import Stat, load_runs, rebin, split_duplicates
from realdata import FMNIST_FAST, require_fashion_mnist

CRITERIA = ("magnitude", "random", "snip")
TARGETS = (0.0, 0.8)
SEEDS = (0, 1)
T_975_DF1 = 12.706204736174707  # Student's t, 97.5% quantile, 1 degree of freedom (t tables: 12.706)


# ---------------------------------------------------------------------------------------------- fixtures


def write_broken_runs(root: Path) -> dict[str, Path]:
    """A failed run (summary.json with status failed) and an unfinished one (only metrics.jsonl)."""
    failed = root / "broken" / "0_snip-s0.5-seed7"
    failed.mkdir(parents=True)
    (failed / "summary.json").write_text(json.dumps(
        {"status": "failed", "error": "RuntimeError: CUDA out of memory (simulated)", "name": "snip-s0.50-seed7"}))
    unfinished = root / "broken" / "1_magnitude-s0.8-seed9"
    unfinished.mkdir(parents=True)
    (unfinished / "metrics.jsonl").write_text(
        json.dumps({"step": 9, "train/loss": 2.0}) + "\n" + json.dumps({"step": 19, "train/loss": 1.5}) + "\n")
    return {"failed": failed, "unfinished": unfinished}


@pytest.fixture(scope="session")
def sweep(tmp_path_factory) -> Path:
    """One real-data multirun with the joblib launcher (2 jobs at once): magnitude, random, snip x target 0 / 0.8
    x seeds 0, 1 on Fashion-MNIST: 6 pruned jobs and the dense baseline once per seed."""
    require_fashion_mnist()
    root = tmp_path_factory.mktemp("sweep")
    cmd = [sys.executable, "-m", "prunelab", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *FMNIST_FAST,
           f"criterion={','.join(CRITERIA)}", f"schedule.target_sparsity={','.join(map(str, TARGETS))}",
           f"seed={','.join(map(str, SEEDS))}", f"hydra.sweep.dir={root / 'multirun'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return root / "multirun"


@pytest.fixture(scope="session")
def built(sweep, tmp_path_factory) -> dict[str, Path]:
    """The report of the sweep plus a folder of broken runs, written with ``prunelab report`` (in process)."""
    extra = tmp_path_factory.mktemp("extra")
    broken = write_broken_runs(extra)
    out = tmp_path_factory.mktemp("report")
    assert report.main([str(sweep), str(extra), "--out", str(out), "--title", "Test comparison"]) == 0
    return {"out": out, "sweep": sweep, **broken}


WIDE_CRITERIA = ("magnitude", "gradient", "snip", "snip_momentum", "random", "taylor_first_order", "movement", "lamp")
WIDE_TARGETS = (0.0, 0.5, 0.75, 0.875, 0.9375, 0.96875, 0.984375)


@pytest.fixture(scope="session")
def wide(tmp_path_factory) -> Path:
    """A report as wide as a full comparison gets (8 criteria x 6 sparsities x 3 seeds, long names), from
    hand-made run directories: what a 1400 px window and a phone must hold."""
    root = tmp_path_factory.mktemp("wide")
    rng = np.random.default_rng(0)
    for c in WIDE_CRITERIA:
        for t in WIDE_TARGETS:
            for seed in (0, 1, 2):
                name = f"dense-seed{seed}" if t == 0 else f"{c}-s{t}-seed{seed}"
                if not (root / "runs" / name).exists():
                    run = write_fake_run(root / "runs" / name, "magnitude" if t == 0 else c, t, seed,
                                         0.9 - 0.3 * t ** 4 + rng.normal(0, 0.004))
                    add_curves(run, t, layers=("fc1", "fc2", "features.block3.conv_long_name", "head"))
    assert report.main([str(root / "runs"), "--out", str(root / "report")]) == 0
    return root / "report" / "report.html"


def summaries(sweep: Path) -> list[tuple[Path, dict]]:
    return [(p.parent, json.loads(p.read_text())) for p in sorted(sweep.glob("*/summary.json"))]


def run_dir(sweep: Path, criterion: str, target: float, seed: int) -> Path:
    (hit,) = [d for d, s in summaries(sweep)
              if s["criterion"] == criterion and s["sparsity/target"] == target and s["seed"] == seed]
    return hit


def md_table(md: str, first_header: str) -> list[list[str]]:
    """The rows (header first) of the Markdown table whose first header cell starts with ``first_header``."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| " + first_header))
    rows = []
    for ln in lines[start:]:
        if not ln.startswith("|"):
            break
        if not set(ln) <= set("|- "):
            rows.append([c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]])
    return rows


def write_fake_run(path: Path, criterion: str, target: float, seed: int, acc: float, pattern: str = "1x1") -> Path:
    """A finished run directory by hand: config.yaml, summary.json (no training)."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(
        f"criterion:\n  criterion_type: {criterion}\nschedule:\n  target_sparsity: {target}\nseed: {seed}\n"
        f"model:\n  name: mlp\npattern:\n  type: {pattern}\ntrainer:\n  progress: none\n")
    (path / "summary.json").write_text(json.dumps(
        {"status": "finished", "name": f"{criterion}-s{target:.2f}-seed{seed}", "criterion": criterion, "seed": seed,
         "test/acc": acc, "val/acc": acc, "sparsity/target": target, "sparsity/actual": target}))
    return path


def add_curves(path: Path, target: float, layers: tuple[str, ...]) -> None:
    """Sparsity and eval curves (metrics.jsonl) and per-layer sparsity (summary) for a hand-made run."""
    rows = [{"step": s, "sparsity/target": min(target, target * s / 60), "sparsity/actual": min(target, target * s / 60),
             "sparsity/masked": min(target, target * s / 60), "eval/acc": 0.5 + s / 300} for s in range(0, 101, 10)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = json.loads((path / "summary.json").read_text())
    summary["sparsity/layers"] = {name: target * (0.8 + 0.1 * i) for i, name in enumerate(layers)}
    (path / "summary.json").write_text(json.dumps(summary))


# ---------------------------------------------------------------------------------------------- fast tests


def test_settings_that_differ_label_the_series(tmp_path):
    write_fake_run(tmp_path / "a", "magnitude", 0.5, 0, 0.9)
    write_fake_run(tmp_path / "b", "magnitude", 0.5, 0, 0.8, pattern="4x1")
    write_fake_run(tmp_path / "c", "snip", 0.5, 1, 0.7)
    series = {r.path.name: r.series for r in load_runs([tmp_path])}
    assert series == {"a": "magnitude [pattern.type=1x1]", "b": "magnitude [pattern.type=4x1]",
                      "c": "snip [pattern.type=1x1]"}


def test_a_model_choice_labels_the_setting_by_its_name_and_many_settings_sort_in_order(tmp_path):
    """Keys that follow from the model chosen (its head, its widths) do not push the label to "setting N": the
    label names the model; where a label must be "setting N", numbers sort as numbers (01 .. 12)."""
    for model, head in (("mlp", "fc3"), ("lenet5", "fc3_conv")):
        for pattern in ("1x1", "4x1"):
            run = write_fake_run(tmp_path / f"{model}-{pattern}", "magnitude", 0.5, 0, 0.9, pattern=pattern)
            cfg = run / "config.yaml"
            cfg.write_text(cfg.read_text().replace("  name: mlp\n", f"  name: {model}\n  head: {head}\n"))
    series = {r.path.name: r.series for r in load_runs([tmp_path])}
    assert series["lenet5-4x1"] == "magnitude [model.name=lenet5, pattern.type=4x1]", series
    assert len(set(series.values())) == 4
    own = tmp_path / "own"  # a key that varies within one model is a setting of its own
    for model, head in (("mlp", "fc3"), ("mlp", "fc2"), ("lenet5", "fc3")):
        run = write_fake_run(own / f"{model}-{head}", "magnitude", 0.5, 0, 0.9)
        cfg = run / "config.yaml"
        cfg.write_text(cfg.read_text().replace("  name: mlp\n", f"  name: {model}\n  head: {head}\n"))
    assert {r.setting for r in load_runs([own])} == {"model.head=fc3, model.name=mlp", "model.head=fc2, model.name=mlp",
                                                    "model.head=fc3, model.name=lenet5"}
    many = tmp_path / "many"
    for i in range(12):  # three keys vary: "setting N"
        run = write_fake_run(many / f"r{i}", "magnitude", 0.5, 0, 0.9, pattern=f"{i}x1")
        cfg = run / "config.yaml"
        cfg.write_text(cfg.read_text() + f"optimizer:\n  lr: {i}\n  momentum: {i % 5}\n")
    labels = sorted({r.setting for r in load_runs([many])})
    assert labels == [f"setting {i:02d}" for i in range(1, 13)], labels


def test_a_setting_is_named_by_the_config_group_option_it_was_composed_from(sweep, tmp_path):
    """Hydra records each run's group options (``schedule=at_init``); where an option tells the settings' keys
    apart one to one, the label names it (not ``schedule.end=0.0, schedule.start=0.0``) and the legend still
    shows its keys. The same option with a key overridden differently, an option whose keys are not the ones it
    composes (``schedule=oneshot schedule.end=0.7``), or a run without the record keeps keys."""
    import yaml

    real = load_runs([sweep])  # what a real run records: its criterion's and the dataset's options
    assert all(r.choices["criterion"] == r.criterion and r.choices["dataset"] == "fashion_mnist"
               for r in real if not r.dense), [r.choices for r in real]
    hydra = yaml.safe_load((real[0].path / ".hydra" / "hydra.yaml").read_text())

    def run(root: Path, name: str, schedule: str, keys: str, record: bool = True) -> None:
        path = write_fake_run(root / name, "magnitude", 0.9, 0, 0.8)
        cfg = path / "config.yaml"
        cfg.write_text(cfg.read_text().replace("schedule:\n", f"schedule:\n{keys}"))
        if record:
            hydra["runtime"]["choices"]["schedule"] = schedule
            (path / ".hydra").mkdir()
            (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))

    at_init, gradual = "  start: 0.0\n  end: 0.0\n", "  start: 0.1\n  end: 0.6\n"
    run(tmp_path / "two", "a", "at_init", at_init)
    run(tmp_path / "two", "b", "iterative", gradual)
    assert {r.path.name: r.setting for r in load_runs([tmp_path / "two"])} == {
        "a": "schedule=at_init", "b": "schedule=iterative"}
    assert rd.label_settings(load_runs([tmp_path / "two"]))["schedule=at_init"] == {
        "schedule": "at_init", "schedule.end": "0.0", "schedule.start": "0.0"}
    run(tmp_path / "two", "c", "iterative", "  start: 0.1\n  end: 0.8\n")  # iterative twice: the keys tell
    assert {r.path.name: r.setting for r in load_runs([tmp_path / "two"])} == {
        "a": "schedule.end=0.0, schedule.start=0.0", "b": "schedule.end=0.6, schedule.start=0.1",
        "c": "schedule.end=0.8, schedule.start=0.1"}
    run(tmp_path / "override", "a", "at_init", at_init)  # an option with its keys overridden: not its own keys
    run(tmp_path / "override", "b", "oneshot", "  start: 0.7\n  end: 0.7\n")
    assert {r.path.name: r.setting for r in load_runs([tmp_path / "override"])} == {
        "a": "schedule.end=0.0, schedule.start=0.0", "b": "schedule.end=0.7, schedule.start=0.7"}
    assert rd.label_settings(load_runs([tmp_path / "override"]))["schedule.end=0.7, schedule.start=0.7"] == {
        "schedule": "oneshot", "schedule.end": "0.7", "schedule.start": "0.7"}  # the legend still names it
    run(tmp_path / "unrecorded", "a", "at_init", at_init)
    run(tmp_path / "unrecorded", "b", "iterative", gradual, record=False)
    assert {r.setting for r in load_runs([tmp_path / "unrecorded"])} == {
        "schedule.end=0.0, schedule.start=0.0", "schedule.end=0.6, schedule.start=0.1"}


def test_a_criterion_option_that_differs_makes_two_methods_not_one_averaged_series(tmp_path):
    """snip_momentum at alpha 0.5 and 0.99 (2 seeds each) beside magnitude, random (its seed key follows the run's
    seed) and the dense baseline: two methods of n=2, each paired with magnitude in the one setting; never one
    series of n=4 averaging both alphas."""
    for seed in (0, 1):
        for alpha, acc in ((0.5, 0.70), (0.99, 0.80)):
            run = write_fake_run(tmp_path / f"sm-{alpha}-{seed}", "snip_momentum", 0.9, seed, acc + seed / 100)
            cfg = run / "config.yaml"
            cfg.write_text(cfg.read_text().replace("criterion:\n", f"criterion:\n  alpha: {alpha}\n  beta: 1.0\n"))
        write_fake_run(tmp_path / f"mag-{seed}", "magnitude", 0.9, seed, 0.75 + seed / 100)
        run = write_fake_run(tmp_path / f"rand-{seed}", "random", 0.9, seed, 0.6)
        cfg = run / "config.yaml"
        cfg.write_text(cfg.read_text().replace("criterion:\n", f"criterion:\n  seed: {seed}\n"))
        write_fake_run(tmp_path / f"dense-{seed}", "magnitude", 0.0, seed, 0.9)
    runs = load_runs([tmp_path])
    assert {r.series for r in runs} == {"snip_momentum (alpha=0.5)", "snip_momentum (alpha=0.99)", "magnitude",
                                        "random", "dense"}
    assert report.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    rows = {r[0]: r[1] for r in md_table(md, "criterion / target sparsity")[1:]}
    assert rows["snip_momentum (alpha=0.99)"].startswith("**80.50 ± 0.71 (n=2)") and "(n=2)" in rows[
        "snip_momentum (alpha=0.5)"], rows
    vs_magnitude = {r[0]: r[1] for r in md_table(md, "Δ vs magnitude")[1:]}
    assert vs_magnitude["snip_momentum (alpha=0.5)"].startswith("-5.00") and \
        vs_magnitude["snip_momentum (alpha=0.99)"].startswith("+5.00"), vs_magnitude  # paired by seed, by hand


def dst_run(path: Path, arm: str, target: float, seed: int, acc: float) -> Path:
    """A hand-made run of one arm of the dst_fmnist comparison: the keys its criterion option sets for itself
    (criterion=static_erk and criterion=gmp label their method)."""
    criterion, regrowth, distribution, start = {
        "rigl": ("random", "rigl", "erk", 0), "set": ("random", "set", "erk", 0),
        "static": ("random", "none", "erk", 0), "gmp": ("magnitude", "none", "global", 300)}[arm]
    write_fake_run(path, criterion, target, seed, acc)
    cfg = path / "config.yaml"
    label = {"static": "static_erk", "gmp": "gmp"}.get(arm)
    if label:
        cfg.write_text(cfg.read_text().replace("criterion:\n", f"criterion:\n  label: {label}\n"))
    seed_key = f"  seed: {seed}\n" if arm == "set" else ""  # regrowth.seed: ${seed}, resolved
    cfg.write_text(cfg.read_text().replace("schedule:\n", f"schedule:\n  start_step: {start}\n")
                   + f"regrowth:\n  name: {regrowth}\n{seed_key}distribution:\n  name: {distribution}\n")
    return path


def test_what_a_criterion_option_sets_for_itself_is_not_a_setting(tmp_path):
    """rigl/set (named after their updater), static ERK-random and gradual magnitude differ in regrowth,
    distribution and schedule keys each arm sets for itself (and SET's regrowth.seed, the seed): one setting,
    compared as criteria (RigL against the magnitude and random references), where a key that varies within a
    series still splits it."""
    for seed in (0, 1):
        for arm, acc in (("rigl", 0.86), ("set", 0.85), ("static", 0.84), ("gmp", 0.87)):
            dst_run(tmp_path / f"{arm}-{seed}", arm, 0.9, seed, acc + seed / 100)
        dst_run(tmp_path / f"dense-{seed}", "gmp", 0.0, seed, 0.88)
    series = {r.path.name: r.series for r in load_runs([tmp_path])}
    assert {n.split("-")[0]: s for n, s in series.items()} == {
        "rigl": "rigl", "set": "set", "static": "static_erk", "gmp": "gmp", "dense": "dense"}
    kept = torch.zeros(4, 5, dtype=torch.bool)
    kept[0] = True  # 5 of 20 kept: rigl keeps row 0; gmp 3 of row 0 and 2 of row 1: Jaccard 3 / (5 + 5 - 3)
    other = torch.zeros(4, 5, dtype=torch.bool)
    other[0, :3] = True
    other[1, :2] = True
    for seed in (0, 1):
        torch.save({"fc1": kept}, tmp_path / f"rigl-{seed}" / "masks.pt")
        torch.save({"fc1": other}, tmp_path / f"gmp-{seed}" / "masks.pt")
    (agreement,) = rd.agreements(load_runs([tmp_path]))  # their masks are compared, as criteria's are
    assert agreement.criteria == ["gmp", "rigl"]
    assert agreement.values["fc1"][("rigl", "gmp")].mean == pytest.approx(3 / 7)
    out = tmp_path / "out"
    assert report.main([str(tmp_path), "--out", str(out)]) == 0
    paired = (out / "report.md").read_text().split("## Paired differences")[1]
    assert "rigl" in paired
    # the static and gradual baselines are references of their own; a pair of references is shown once
    assert "Δ vs static_erk" in paired and "Δ vs gmp" in paired
    assert "static_erk vs gmp" not in paired and "gmp vs static_erk" in paired
    dst_run(tmp_path / "gmp-other", "gmp", 0.9, 2, 0.8)  # a second window for magnitude only: now a setting
    cfg = tmp_path / "gmp-other" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("start_step: 300", "start_step: 100"))
    series = {r.path.name: r.series for r in load_runs([tmp_path])}
    assert series["gmp-other"] != series["gmp-0"] and "schedule.start_step" in series["gmp-other"]


def test_criteria_trained_differently_are_never_one_comparison(tmp_path):
    """One run per criterion, trained with other lengths and learning rates: what differs is no choice of the
    method (schedule, distribution, regrowth), so it splits them into settings instead of passing for the
    criterion's own (the two would otherwise be ranked against each other)."""
    for name, steps, lr in (("magnitude", 100, 0.1), ("random", 300, 0.01)):
        path = write_fake_run(tmp_path / name, name, 0.9, 0, 0.8)
        cfg = path / "config.yaml"
        cfg.write_text(cfg.read_text().replace("trainer:\n", f"trainer:\n  max_steps: {steps}\n")
                       + f"optimizer:\n  lr: {lr}\n")
    series = {r.path.name: r.series for r in load_runs([tmp_path])}
    assert series["magnitude"] != "magnitude" and "optimizer.lr=0.1" in series["magnitude"], series
    assert "trainer.max_steps=300" in series["random"], series


def test_a_labelled_preset_is_its_own_series_not_a_setting_of_its_criterion(tmp_path):
    """Static ERK-random (criterion=static_erk: the random criterion at init, labelled) beside gradual random
    pruning: two methods, "static_erk" and "random", never "random [setting 1]" and "random [setting 2]" (nor the
    static masks taken as the random baseline)."""
    for seed in (0, 1):
        dst_run(tmp_path / f"static-{seed}", "static", 0.9, seed, 0.84)
        write_fake_run(tmp_path / f"random-{seed}", "random", 0.9, seed, 0.80)
    series = {r.path.name.split("-")[0]: r.series for r in load_runs([tmp_path])}
    assert series == {"static": "static_erk", "random": "random"}
    cfg = dst_run(tmp_path / "rigl-0", "rigl", 0.9, 0, 0.86) / "config.yaml"  # a user's label wins over the updater
    cfg.write_text(cfg.read_text().replace("criterion:\n", "criterion:\n  label: rigl_long\n"))
    assert {r.path.name: r.criterion for r in load_runs([tmp_path])}["rigl-0"] == "rigl_long"


def test_a_repeated_run_counts_once(tmp_path, capsys):
    old = write_fake_run(tmp_path / "old", "magnitude", 0.5, 0, 0.5)
    new = write_fake_run(tmp_path / "new", "magnitude", 0.5, 0, 0.9)
    os.utime(old / "summary.json", (1, 1))
    kept, superseded = split_duplicates(load_runs([tmp_path]))
    assert [r.path.name for r in kept] == ["new"] and [r.path.name for r in superseded] == ["old"]
    assert report.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    counts = f"2 runs found under {tmp_path}: 1 finished and compared, 1 superseded by a newer run of the same " \
        "config, 0 failed or unfinished"
    assert capsys.readouterr().err == f"prunelab report: {counts}\n"  # the console says what the report says
    md = (tmp_path / "out" / "report.md").read_text()
    assert counts.replace(str(tmp_path), f"`{tmp_path}`") + "." in md
    assert "1 criterion (`magnitude`) at 1 target sparsity, 1 seed (0); 1 finished run, none of them dense." in md
    results = md.split("## Results")[1].split("## Paired differences")[0]
    assert "90.00 (n=1)" in results and "50.00" not in results
    assert f"`{tmp_path.name}/old`" in md.split("## All runs")[1] and new.exists()


def test_dense_runs_of_every_criterion_count_once_per_seed(tmp_path):
    """An older sweep trained the dense model once per criterion: 3 criteria x 2 seeds of dense runs are 2 seeds
    of one baseline (n=2), whatever criterion each ran with; the pruned cells keep their own n."""
    accs = {0: 0.90, 1: 0.92}
    for c in ("magnitude", "snip", "random"):
        for seed, acc in accs.items():
            write_fake_run(tmp_path / f"{c}-dense-{seed}", c, 0.0, seed, acc)
            write_fake_run(tmp_path / f"{c}-half-{seed}", c, 0.5, seed, acc - 0.05)
    out = tmp_path / "out"
    assert report.main([str(tmp_path), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    dense = statistics.fmean(accs.values()) * 100, statistics.stdev(accs.values()) * 100
    assert f"Dense baseline (no pruning; one run per seed, whatever the criteria): {dense[0]:.2f} ± {dense[1]:.2f} " \
           "(n=2)." in md
    with (out / "accuracy.csv").open() as f:
        rows = {(r["series"], float(r["target"])): int(r["n"]) for r in csv.DictReader(f)}
    assert rows == {("dense", 0.0): 2, ("magnitude", 0.5): 2, ("random", 0.5): 2, ("snip", 0.5): 2}
    assert "4 of them are dense runs (a dense run prunes nothing, whatever its criterion" in md.split("## All runs")[1]


def test_two_sweeps_dense_runs_are_one_baseline_of_both_families(tmp_path):
    """An at-init sweep and a gradual sweep, each with its dense run per seed (the dense job keeps the sweep's
    schedule): the schedule is each criterion's own, and a dense run does not depend on it, so the report is one
    comparison (snip_init against magnitude) with one dense baseline of n=2 seeds; with ``trainer.finetune_steps``
    the schedule's end sets a dense run's length, and the sweeps are two settings."""
    def family(root: Path, criterion: str, schedule: str, finetune: bool = False) -> None:
        for target, seed in ((0.0, 0), (0.0, 1), (0.9, 0), (0.9, 1)):
            path = write_fake_run(root / f"{criterion}-{target}-{seed}", "magnitude" if target == 0 else criterion,
                                  target, seed, (0.90 if target == 0 else 0.85) + seed / 100)
            cfg = path / "config.yaml"
            cfg.write_text(cfg.read_text().replace("schedule:\n", f"schedule:\n{schedule}").replace(
                "trainer:\n", "trainer:\n  finetune_steps: 100\n" if finetune else "trainer:\n"))

    at_init, gradual = "  start: 0.0\n  end: 0.0\n  pruning_frequency: 1\n", "  start: 0.1\n  end: 0.6\n"
    family(tmp_path / "a", "snip_init", at_init)
    family(tmp_path / "b", "magnitude", gradual)
    runs = load_runs([tmp_path])
    assert {r.setting for r in runs} == {""}, {r.path.name: r.series for r in runs}
    assert {s: b.n for s, b in rd.dense_baselines(runs).items()} == {"": 2}
    assert (report.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0)
    md = (tmp_path / "out" / "report.md").read_text()
    paired = md.split("## Paired differences")[1]
    assert "snip_init" in paired and "magnitude" in paired
    assert "8 finished runs, 4 of them dense (2 seeds: sweeps of several settings)" in md
    finetuned = tmp_path / "finetuned"
    family(finetuned / "a", "snip_init", at_init, finetune=True)
    family(finetuned / "b", "magnitude", gradual, finetune=True)
    runs = load_runs([finetuned])
    assert len({r.setting for r in runs}) == 2 and all(b.n == 2 for b in rd.dense_baselines(runs).values())
    # magnitude both at init and gradually (pai_lenet300): two settings of one criterion, and the gradual sweep's
    # dense run is the baseline of both
    both = tmp_path / "both"
    family(both / "a", "magnitude", at_init)
    family(both / "b", "magnitude", gradual)
    for dense in (both / "a").glob("magnitude-0.0-*"):
        shutil.rmtree(dense)
    runs = load_runs([both])
    settings = {r.setting for r in runs if not r.dense}
    assert len(settings) == 2
    assert {s: b.n for s, b in rd.dense_baselines(runs).items()} == {s: 2 for s in settings}
    shared = rd.shared_baselines(rd.dense_baselines(runs))  # the same runs: one line, labelled with both settings
    assert list(shared) == ["; ".join(sorted(settings))] and shared["; ".join(sorted(settings))].n == 2
    assert report.main([str(both), "--out", str(both / "out")]) == 0  # one criterion per setting: nothing to pair
    paired = (both / "out" / "report.md").read_text().split("## Paired differences")[1].split("\n## ")[0]
    # no criterion to pair with another; each setting's one criterion against the dense baseline they share
    assert "Δ vs magnitude" not in paired and "seeds needed" not in paired and "No dense, `random`" not in paired
    assert paired.count("| Δ vs dense [") == 2


def test_one_dense_run_per_seed_is_the_baseline_of_every_pattern(tmp_path):
    """A sweep over patterns trains one dense run per seed (with the default pattern): it is the baseline of the
    1x1 and the 4x1 settings alike, and each setting's criteria are paired with it."""
    for pattern in ("1x1", "4x1"):
        for seed in (0, 1):
            write_fake_run(tmp_path / f"magnitude-{pattern}-{seed}", "magnitude", 0.9, seed, 0.8 + seed / 100,
                           pattern=pattern)
    for seed in (0, 1):
        write_fake_run(tmp_path / f"dense-{seed}", "magnitude", 0.0, seed, 0.9 + seed / 50)
    runs = load_runs([tmp_path])
    settings = {r.setting for r in runs if not r.dense}
    assert len(settings) == 2
    baselines = rd.dense_baselines(runs)
    assert set(baselines) == settings and all(b.values == [0.9, 0.92] for b in baselines.values())
    assert report.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "against the baseline criteria that ran (`magnitude`) at each target" in md  # of random, static_erk, ...
    for setting in settings:  # magnitude - dense, paired by seed: -10 and -11 points
        rows = md_table(md, f"Δ vs dense [{setting}] (points)")
        assert rows[1][0] == "magnitude" and rows[1][1].startswith("-10.50 [")


def test_exact_sparsity_labels_and_section_order(tmp_path):
    for t in (0.9375, 0.94, 0.96875):
        for seed in (0, 1):
            write_fake_run(tmp_path / f"m-{t}-{seed}", "magnitude", t, seed, 0.8 + seed / 100)
    out = tmp_path / "out"
    assert report.main([str(tmp_path), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    header = md_table(md, "criterion / target sparsity")[0]
    assert header[1:] == ["0.9375 (16×)", "0.94 (16.67×)", "0.96875 (32×)"]
    titles = re.findall(r"^## (.+)$", md, re.M)
    assert titles[:2] == ["Results", "Paired differences"] and titles[-1] == "All runs (6)"
    html = (out / "report.html").read_text()
    last = html.split('<section id="all-runs-6">')[1]
    assert "<details><summary>" in last and last.index("<details>") < last.index("<table>")
    assert html.index("<img") < html.index("<table>")  # the key figure comes before any table


def test_bold_marks_the_best_and_the_criteria_indistinguishable_from_it(tmp_path):
    values = {"magnitude": (0.85, 0.86, 0.84), "snip": (0.845, 0.862, 0.838), "random": (0.70, 0.72, 0.69)}
    for c, accs in values.items():
        for seed, acc in enumerate(accs):
            write_fake_run(tmp_path / f"{c}-{seed}", c, 0.9, seed, acc)
    out = tmp_path / "out"
    assert report.main([str(tmp_path), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    rows = {r[0]: r[1] for r in md_table(md, "criterion / target sparsity")[1:]}
    assert list(rows) == ["magnitude", "snip", "random"]  # by mean at the highest sparsity
    assert rows["magnitude"].startswith("**") and rows["snip"].startswith("**") and not rows["random"].startswith("*")
    # hand: snip - magnitude = -0.17 points [-1.04, +0.71]; random - magnitude = -14.67 [-16.10, -13.23]
    assert "best `magnitude` (85.00); indistinguishable from it: `snip` (-0.17 [-1.04, +0.71]); below it: " \
           "`random` (-14.67 [-16.10, -13.23] ▼)." in md
    vs_random = {r[0]: r[1] for r in md_table(md, "Δ vs random")[1:]}
    assert vs_random["magnitude"].endswith("▲") and vs_random["snip"].endswith("▲")


def test_criteria_are_dodged_and_ticks_exact():
    acc = {(c, t): Stat([0.8, 0.82]) for c in ("a", "b", "c") for t in (0.5, 0.9375)}
    actual = {k: Stat([k[1], k[1]]) for k in acc}
    fig = rf.accuracy_vs_sparsity(acc, actual, {"": Stat([0.9, 0.91])}, rf.colours(["a", "b", "c"]))
    ax = fig.axes[0]
    xs = {bars.get_label(): bars.lines[0].get_xdata() for bars in ax.containers}
    assert sorted(xs) == ["a (n=2)", "b (n=2)", "c (n=2)"]
    at_16 = sorted(float(x[1]) for x in xs.values())
    assert len(set(at_16)) == 3 and at_16[0] < 16 < at_16[-1]  # three distinct x around 16x
    assert math.isclose(at_16[0] * at_16[2], 16 ** 2, rel_tol=1e-9)  # symmetric on the log axis
    assert at_16[-1] / at_16[0] < 2 ** 0.3  # well inside the gap to the 2x point
    assert [t.get_text() for t in ax.get_xticklabels()] == ["2×\n0.50", "16×\n0.9375"]


def test_long_series_labels_keep_the_plots_and_the_legend_whole():
    """20 series labelled with two keys each, and a dense baseline serving four settings: the legend (under the
    plot, wrapped) lies inside the saved figure and the axes keep most of its width; the layer bars share one
    legend, outside every panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    settings = [f"distribution.name={d}, pattern.type={p}" for d in ("erk", "global") for p in ("1x1", "4x1")]
    names = [f"{c} [{s}]" for c in ("gradient", "magnitude", "random", "snip_momentum", "taylor") for s in settings]
    acc = {(n, t): Stat([0.8, 0.82]) for n in names for t in (0.5, 0.9)}
    actual = {k: Stat([k[1], k[1]]) for k in acc}
    figs = [rf.accuracy_vs_sparsity(acc, actual, {"; ".join(settings): Stat([0.9, 0.91])}, rf.colours(names)),
            rf.layer_sparsity_bars({(n, t, layer): Stat([t]) for n in names for t in (0.5, 0.9)
                                    for layer in ("fc1", "fc2", "head")}, rf.colours(names))]
    for fig in figs:
        FigureCanvasAgg(fig).draw()
        box = fig.bbox
        (legend,) = fig.legends
        extent = legend.get_window_extent()
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0, (extent, box)
        for ax in fig.axes:
            assert ax.get_legend() is None and ax.get_position().width > 0.35, ax.get_position()
            assert not ax.get_window_extent().overlaps(extent)
    assert len(figs[0].legends[0].get_texts()) == 21 and figs[0].axes[0].get_position().width > 0.8


def test_target_is_drawn_as_steps_and_actual_as_samples(tmp_path):
    run_path = write_fake_run(tmp_path / "g", "gradient", 0.9, 0, 0.8)
    rows = [{"step": 10, "sparsity/target": 0.5, "sparsity/actual": 0.52, "sparsity/masked": 0.5},
            {"step": 20, "sparsity/target": 0.9, "sparsity/actual": 0.9, "sparsity/masked": 0.9}]
    (run_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run,) = load_runs([tmp_path])
    fig = rf.sparsity_curves({"gradient": {0.9: [run]}}, {"gradient": "C0"})
    lines = fig.axes[0].get_lines()
    (target,) = [ln for ln in lines if ln.get_drawstyle() == "steps-post"]
    assert list(target.get_ydata()) == [0.5, 0.9]
    actual, masked = [ln for ln in lines if ln.get_linestyle() == "None"]
    assert list(actual.get_ydata()) == [0.52, 0.9] and actual.get_marker() == "o"
    assert list(masked.get_xdata()) == [10] and list(masked.get_ydata()) == [0.5]  # only where it differs


def test_rebin_keeps_counts_on_a_wider_grid():
    counts, edges = [1, 4, 2, 3], [0.0, 1.0, 2.0, 3.0, 4.0]
    same = rebin(counts, edges, np.array(edges))
    assert np.allclose(same, counts)
    wide = rebin(counts, edges, np.linspace(-2.0, 6.0, 17))
    assert math.isclose(wide.sum(), sum(counts))
    assert np.allclose(wide[:4], 0) and np.allclose(wide[-4:], 0)
    assert np.allclose(wide[4:6], 0.5) and np.allclose(wide[6:8], 2.0)  # each bin spread evenly over halves


def test_dynamic_sparse_training_shows_no_score_distribution(tmp_path):
    """A RigL run's scores.jsonl holds its initial masks' criterion's (random) scores, not what its updates rank
    (|W| and |grad|): the report leaves it out of the score distributions and says why; magnitude's is shown."""
    from appkit import run_inprocess

    short = ["logger=none", "trainer.progress=none", "trainer.max_steps=60", "trainer.eval_every=30"]
    run_inprocess([*short, "criterion=rigl", "regrowth.delta_t=20"], tmp_path / "runs" / "rigl")
    run_inprocess([*short, "schedule.start_step=10", "schedule.end_step=40", "schedule.pruning_frequency=10"],
                  tmp_path / "runs" / "magnitude")
    assert (tmp_path / "runs" / "rigl" / "scores.jsonl").stat().st_size > 0
    assert report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("fig-scores-*.png")) == ["fig-scores-magnitude.png"]
    section = (tmp_path / "out" / "report.md").read_text().split("## Score distributions")[1].split("\n## ")[0]
    assert "Not shown: dynamic sparse training, whose updates rank |W| to drop and |grad| (RigL) or chance (SET) to " \
           "grow: rigl (scores.jsonl holds its initial masks' random scores)." in section
    assert "Fraction of zero scores at the last logged step (a pruning step" in section


def test_no_runs_is_an_error(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2  # bad input, as a missing directory is
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no runs found" in err
    assert report.main([str(tmp_path / "missing")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_only_broken_runs_still_give_a_report(tmp_path):
    write_broken_runs(tmp_path)
    out = tmp_path / "out"
    assert report.main([str(tmp_path), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "CUDA out of memory (simulated)" in md and "last logged step 19" in md
    assert "No finished runs" in md


@pytest.mark.slow
def test_module_and_cli_entry_points_default_out(tmp_path):
    write_broken_runs(tmp_path)
    for cmd in ([sys.executable, "-m", "prunelab.report", str(tmp_path)],
                [sys.executable, "-m", "prunelab", "report", str(tmp_path), "--title", "T2"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert Path(proc.stdout.strip()) == (tmp_path / "report" / "report.html").resolve()
    assert "<h1>T2</h1>" in (tmp_path / "report" / "report.html").read_text()


# ---------------------------------------------------------------------------------------------- on a real sweep


@pytest.mark.slow
def test_files_written(built):
    out = built["out"]
    for name in ("report.html", "report.md", "runs.csv", "accuracy.csv", "stats.csv", "jaccard.csv",
                 "fig-accuracy-vs-sparsity.png", "fig-sparsity-curves.png", "fig-layer-sparsity.png"):
        assert (out / name).stat().st_size > 0, name
    assert len(list(out.glob("fig-scores-*.png"))) == len(CRITERIA)
    assert len(list(out.glob("fig-agreement-*.png"))) == len([t for t in TARGETS if t > 0])


@pytest.mark.slow
def test_the_dense_baseline_runs_once_per_seed(built):
    jobs = sorted(p.name for p in built["sweep"].iterdir() if p.is_dir())
    assert len(jobs) == len(CRITERIA) * len(SEEDS) + len(SEEDS)
    assert sorted(j.rsplit("_", 1)[0] for j in jobs if "dense" in j) == [f"dense-seed{s}" for s in SEEDS]
    dense = [s for _, s in summaries(built["sweep"]) if s["dense"]]
    assert sorted(s["seed"] for s in dense) == list(SEEDS) and {s["sparsity/target"] for s in dense} == {0.0}
    accs = [s["test/acc"] for s in dense]
    md = (built["out"] / "report.md").read_text()
    expected = f"{statistics.fmean(accs) * 100:.2f} ± {statistics.stdev(accs) * 100:.2f} (n={len(SEEDS)})"
    assert f"whatever the criteria): {expected}." in md
    with (built["out"] / "accuracy.csv").open() as f:
        (row,) = [r for r in csv.DictReader(f) if r["series"] == "dense"]
    assert int(row["n"]) == len(SEEDS) and math.isclose(float(row["test_acc_mean"]), statistics.fmean(accs))


@pytest.mark.slow
def test_accuracy_table_equals_summaries(built):
    groups: dict[tuple[str, float], list[float]] = {}
    for _, s in summaries(built["sweep"]):
        assert s["status"] == "finished" and s["dataset"] == "fashion_mnist"
        if not s["dense"]:
            groups.setdefault((s["criterion"], s["sparsity/target"]), []).append(s["test/acc"])
    pruned = [t for t in TARGETS if t > 0]
    assert set(groups) == {(c, t) for c in CRITERIA for t in pruned}

    with (built["out"] / "accuracy.csv").open() as f:
        rows = {(r["series"], float(r["target"])): r for r in csv.DictReader(f) if r["series"] != "dense"}
    assert set(rows) == set(groups)
    for key, values in groups.items():
        assert int(rows[key]["n"]) == len(SEEDS)
        assert math.isclose(float(rows[key]["test_acc_mean"]), statistics.fmean(values), rel_tol=1e-12)
        assert math.isclose(float(rows[key]["test_acc_std"]), statistics.stdev(values), rel_tol=1e-9, abs_tol=1e-15)

    table = md_table((built["out"] / "report.md").read_text(), "criterion / target sparsity")
    header, body = table[0], {r[0]: r[1:] for r in table[1:]}
    assert header[1:] == ["0.80 (5×)"]
    for c in CRITERIA:
        v = groups[(c, 0.8)]
        assert body[c][0].strip("*") == f"{statistics.fmean(v) * 100:.2f} ± {statistics.stdev(v) * 100:.2f} (n=2)"
    best = max(CRITERIA, key=lambda c: statistics.fmean(groups[(c, 0.8)]))
    assert body[best][0].startswith("**")
    assert f"<strong>{body[best][0].strip('*')}</strong>" in (built["out"] / "report.html").read_text()


@pytest.mark.slow
def test_paired_statistics_equal_a_hand_computation_from_the_summaries(built):
    acc = {(s["criterion"], s["seed"]): s["test/acc"] for _, s in summaries(built["sweep"]) if not s["dense"]}
    acc.update({("dense", s["seed"]): s["test/acc"] for _, s in summaries(built["sweep"]) if s["dense"]})
    with (built["out"] / "stats.csv").open() as f:
        rows = {(r["reference"], r["criterion"]): r for r in csv.DictReader(f) if float(r["target"]) == 0.8}
    for ref in ("random", "magnitude", "dense"):  # dense: what pruning to 0.8 costs each criterion
        for c in CRITERIA:
            if c == ref:
                continue
            d = [acc[(c, s)] - acc[(ref, s)] for s in SEEDS]
            mean, sd = statistics.fmean(d), statistics.stdev(d)
            half = T_975_DF1 * sd / math.sqrt(2)
            row = rows[(ref, c)]
            assert int(row["n"]) == 2 and row["versus"] == ref
            assert math.isclose(float(row["mean_diff"]), mean, abs_tol=1e-12)
            assert math.isclose(float(row["ci95_low"]), mean - half, rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(float(row["ci95_high"]), mean + half, rel_tol=1e-9, abs_tol=1e-12)
            assert (row["excludes_zero"] == "True") == (mean - half > 0 or mean + half < 0)


@pytest.mark.slow
def test_jaccard_matrix_from_masks(built):
    target, pair, layer_rows = 0.8, ("magnitude", "snip"), {}
    with (built["out"] / "jaccard.csv").open() as f:
        for r in csv.DictReader(f):
            if float(r["target"]) == target and (r["criterion_a"], r["criterion_b"]) == pair:
                layer_rows[r["layer"]] = r
    by_layer: dict[str, list[float]] = {}
    for seed in SEEDS:
        a = torch.load(run_dir(built["sweep"], pair[0], target, seed) / "masks.pt", weights_only=True)
        b = torch.load(run_dir(built["sweep"], pair[1], target, seed) / "masks.pt", weights_only=True)
        assert a.keys() == b.keys()
        for name in a:
            x, y = a[name].numpy().ravel(), b[name].numpy().ravel()
            by_layer.setdefault(name, []).append(np.sum(x & y) / np.sum(x | y))
        x = np.concatenate([a[n].numpy().ravel() for n in a])
        y = np.concatenate([b[n].numpy().ravel() for n in a])
        by_layer.setdefault("all", []).append(np.sum(x & y) / np.sum(x | y))
    assert set(layer_rows) == set(by_layer)
    for name, values in by_layer.items():
        assert int(layer_rows[name]["n"]) == len(SEEDS)
        assert math.isclose(float(layer_rows[name]["jaccard_mean"]), float(np.mean(values)), rel_tol=1e-12)

    matrix = md_table((built["out"] / "report.md").read_text(), f"Jaccard, all layers, target {target:.2f}")
    assert matrix[0][1:] == list(CRITERIA)
    cells = {r[0]: r[1:] for r in matrix[1:]}
    for i, c in enumerate(CRITERIA):
        assert cells[c][i] == "1.000"
    assert cells[pair[0]][CRITERIA.index(pair[1])] == cells[pair[1]][0] == f"{np.mean(by_layer['all']):.3f}"


@pytest.mark.slow
def test_failed_and_unfinished_runs_listed(built):
    md = (built["out"] / "report.md").read_text()
    html = (built["out"] / "report.html").read_text()
    section = md.split("## Failed and unfinished runs", 1)[1]
    for text in ("snip-s0.50-seed7", "failed", "RuntimeError: CUDA out of memory (simulated)",
                 "1_magnitude-s0.8-seed9", "unfinished", "no summary.json", "last logged step 19"):
        assert text in section, text
        assert text in html, text


@pytest.mark.slow
def test_html_is_self_contained(built):
    html = (built["out"] / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    srcs = re.findall(r"<img[^>]*\ssrc=\"([^\"]*)\"", html)
    assert len(srcs) == len(list(built["out"].glob("fig-*.png")))
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    for heading in ("Test comparison", "Results", "Paired differences", "Sparsity over training",
                    "Score distributions", "Per-layer sparsity", "Criterion agreement", "Failed and unfinished runs",
                    "All runs (8)"):
        assert re.search(rf"<h[12][^>]*>{re.escape(heading)}</h[12]>", html), heading
        assert re.search(rf"^#+ {re.escape(heading)}$", (built["out"] / "report.md").read_text(), re.M), heading


@pytest.mark.slow
def test_chromium_screenshot_shows_the_report(built, tmp_path):
    from matplotlib.image import imread

    img = imread(screenshot(built["out"] / "report.html", 1400, 3000, tmp_path))[..., :3]
    assert img.shape[:2] == (3000, 1400)
    non_white = np.any(img < 0.95, axis=-1).mean()
    colours = len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert non_white > 0.03, non_white  # text, tables and the embedded plots, not a blank page
    assert colours > 500, colours  # plot colours (viridis, tab10), not just black text on white


TOO_WIDE = ('<div class="table" id="planted-too-wide"><table><tr><td style="white-space:nowrap">'
            + "a cell that refuses to wrap " * 40 + "</td></tr></table></div>")


@pytest.mark.slow
@pytest.mark.parametrize("width", [1400, 390])
def test_nothing_overflows_at_desktop_and_phone_width(built, wide, tmp_path, width):
    """Measured in Chromium: no table and no figure wider than its box, the page never scrolls sideways, every
    figure drawn; and the check sees a table planted too wide on purpose."""
    for page in (built["out"] / "report.html", wide):
        facts = layout_facts(page, width, tmp_path)
        assert facts["innerWidth"] == width, facts
        assert facts["tables"] >= 6 and facts["figures"] >= 3, facts
        assert facts["overflow"] == [], f"{page.parent.name} at {width} px: {facts['overflow']}"
    planted = layout_facts(wide, width, tmp_path, extra_html=TOO_WIDE)
    assert [o["id"] for o in planted["overflow"]] == ["planted-too-wide"], planted["overflow"]


def test_the_shared_line_says_how_the_pruned_runs_were_pruned(tmp_path):
    """An at-init comparison read as a gradual one: the dense runs keep the schedule's defaults, so the schedule
    was shared by no run and the line named only an irrelevant decay type. What only pruning depends on is shared
    when the pruned runs share it; the schedule option they chose (Hydra's record) opens the line."""
    import yaml

    from prunelab.report.blocks import Context
    from prunelab.report.results import setup_text

    def run(name: str, target: float, seed: int, schedule: str, keys: str) -> None:
        path = write_fake_run(tmp_path / name, "random" if target else "magnitude", target, seed, 0.8)
        cfg = path / "config.yaml"
        cfg.write_text(cfg.read_text().replace("schedule:\n", f"schedule:\n{keys}"))
        (path / ".hydra").mkdir()
        (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {
            "schedule": schedule}}}}))

    for seed in (0, 1):
        run(f"p{seed}", 0.9, seed, "at_init", "  start: 0.0\n  end: 0.0\n  sparsity_decay_type: exp\n")
        run(f"d{seed}", 0.0, seed, "iterative", "  start: 0.1\n  end: 0.6\n  sparsity_decay_type: exp\n")
    text = setup_text(Context(load_runs([tmp_path]), [tmp_path], tmp_path / "out", {}))
    shared = text.split("Shared: ")[1]
    assert shared.startswith("schedule `at_init`, ") and "schedule.start `0.0`, schedule.end `0.0`" in shared, text


def test_dense_runs_of_two_settings_are_two_curves_and_two_lines(tmp_path):
    """The validation curves drew one dense curve, the mean of the dense runs of two learning rates; the key figure
    drew both settings' dense baselines as the same black dashes. One dense curve per setting, each its own dash."""
    import matplotlib.pyplot as plt

    for lr, acc in ((0.02, 0.5), (0.2, 0.9)):
        for name, target in (("magnitude", 0.5), ("dense", 0.0)):
            path = write_fake_run(tmp_path / f"{name}-{lr}", "magnitude", target, 0, acc)
            cfg = path / "config.yaml"
            cfg.write_text(cfg.read_text() + f"optimizer:\n  lr: {lr}\n")
            rows = [{"step": s, "eval/acc": acc + s / 1000} for s in (10, 20)]
            (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = load_runs([tmp_path])
    dense = [r for r in runs if r.dense]
    fig = rf.eval_curves(rd.by_series_and_target(rd.pruned_runs(runs)), rf.colours(sorted({r.series for r in runs})),
                         dense)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("dense")}
    assert sorted(lines) == ["dense [optimizer.lr=0.02] (n=1)", "dense [optimizer.lr=0.2] (n=1)"]
    assert [round(float(y), 6) for y in lines["dense [optimizer.lr=0.2] (n=1)"].get_ydata()] == [91.0, 92.0]
    assert len({str(ln.get_linestyle()) for ln in lines.values()}) == 2
    plt.close(fig)
    acc = rd.aggregate(rd.pruned_runs(runs), lambda r: r.test_acc)
    actual = rd.aggregate(rd.pruned_runs(runs), lambda r: r.actual)
    fig = rf.accuracy_vs_sparsity(acc, actual, rd.shared_baselines(rd.dense_baselines(runs)),
                                  rf.colours(sorted({s for s, _ in acc})))
    styles = {ln.get_label(): str(ln.get_linestyle()) for ln in fig.axes[0].get_lines()
              if ln.get_label().startswith("dense")}
    assert len(styles) == 2 and len(set(styles.values())) == 2, styles
    plt.close(fig)


def test_a_baseline_drawn_two_ways_is_two_baselines(tmp_path):
    """random runs of an earlier version (no criterion.stream: read as model_init, what they drew) beside the rerun
    (stream=independent) are two series, and both stay baselines the others are paired with: the report matched
    the exact name `random` and compared with nothing."""
    for seed in (0, 1):
        write_fake_run(tmp_path / f"mag-{seed}", "magnitude", 0.9, seed, 0.80 + seed / 100)
        old = write_fake_run(tmp_path / f"old-{seed}", "random", 0.9, seed, 0.60)
        new = write_fake_run(tmp_path / f"new-{seed}", "random", 0.9, seed, 0.70 + seed / 50)
        for run, stream in ((old, ""), (new, "  stream: independent\n")):
            cfg = run / "config.yaml"
            cfg.write_text(cfg.read_text().replace("criterion:\n", f"criterion:\n  seed: {seed}\n{stream}"))
    runs = load_runs([tmp_path])
    assert {r.series for r in runs} == {"magnitude", "random (stream=independent)", "random (stream=model_init)"}
    assert report.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "against the baseline criteria that ran (`random (stream=independent)`, `random (stream=model_init)`, " \
        "`magnitude`)" in md
    vs_new = {r[0]: r[1] for r in md_table(md, "Δ vs random (stream=independent)")[1:]}
    assert vs_new["magnitude"].startswith("+9.50") and vs_new["random (stream=model_init)"].startswith("-11.00")
    assert md_table(md, "Δ vs random (stream=model_init)") and md_table(md, "Δ vs magnitude")
