"""Offline report: tables equal the runs' summaries, Jaccard from masks, failed runs listed, self-contained HTML
that renders in headless Chromium. One small multirun (2 criteria x 2 sparsities x 2 seeds) feeds the slow tests."""
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

from prunelab import report
from prunelab.report.data import load_runs, rebin, split_duplicates

CRITERIA = ("magnitude", "snip")
TARGETS = (0.0, 0.8)
SEEDS = (0, 1)
FAST_RUN = ["logger=none", "trainer.progress=none", "trainer.max_steps=40", "schedule.start_step=5",
            "schedule.end_step=25", "schedule.pruning_frequency=5", "trainer.eval_every=20"]


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
    """One multirun with the joblib launcher (2 jobs at once): magnitude, snip x target 0 / 0.8 x seeds 0, 1."""
    root = tmp_path_factory.mktemp("sweep")
    cmd = [sys.executable, "-m", "prunelab", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", *FAST_RUN, f"criterion={','.join(CRITERIA)}",
           f"schedule.target_sparsity={','.join(map(str, TARGETS))}", f"seed={','.join(map(str, SEEDS))}",
           f"hydra.sweep.dir={root / 'multirun'}"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
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


# ---------------------------------------------------------------------------------------------- fast tests


def test_settings_that_differ_label_the_series(tmp_path):
    write_fake_run(tmp_path / "a", "magnitude", 0.5, 0, 0.9)
    write_fake_run(tmp_path / "b", "magnitude", 0.5, 0, 0.8, pattern="4x1")
    write_fake_run(tmp_path / "c", "snip", 0.5, 1, 0.7)
    series = {r.path.name: r.series for r in load_runs([tmp_path])}
    assert series == {"a": "magnitude [pattern.type=1x1]", "b": "magnitude [pattern.type=4x1]",
                      "c": "snip [pattern.type=1x1]"}


def test_a_repeated_run_counts_once(tmp_path):
    old = write_fake_run(tmp_path / "old", "magnitude", 0.5, 0, 0.5)
    new = write_fake_run(tmp_path / "new", "magnitude", 0.5, 0, 0.9)
    os.utime(old / "summary.json", (1, 1))
    kept, superseded = split_duplicates(load_runs([tmp_path]))
    assert [r.path.name for r in kept] == ["new"] and [r.path.name for r in superseded] == ["old"]
    assert report.main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "90.00 (n=1)" in md and "50.00" not in md.split("## Test accuracy table")[1]
    assert f"`{tmp_path.name}/old`" in md.split("## Overview")[1] and new.exists()


def test_rebin_keeps_counts_on_a_wider_grid():
    counts, edges = [1, 4, 2, 3], [0.0, 1.0, 2.0, 3.0, 4.0]
    same = rebin(counts, edges, np.array(edges))
    assert np.allclose(same, counts)
    wide = rebin(counts, edges, np.linspace(-2.0, 6.0, 17))
    assert math.isclose(wide.sum(), sum(counts))
    assert np.allclose(wide[:4], 0) and np.allclose(wide[-4:], 0)
    assert np.allclose(wide[4:6], 0.5) and np.allclose(wide[6:8], 2.0)  # each bin spread evenly over halves


def test_no_runs_is_an_error(tmp_path, capsys):
    assert report.main([str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no runs found" in err
    assert report.main([str(tmp_path / "missing")]) != 0
    assert "not a directory" in capsys.readouterr().err


def test_only_broken_runs_still_give_a_report(tmp_path):
    broken = write_broken_runs(tmp_path)
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
    for name in ("report.html", "report.md", "runs.csv", "accuracy.csv", "jaccard.csv",
                 "fig-accuracy-vs-sparsity.png", "fig-sparsity-curves.png", "fig-layer-sparsity.png"):
        assert (out / name).stat().st_size > 0, name
    assert len(list(out.glob("fig-scores-*.png"))) == len(CRITERIA)
    assert len(list(out.glob("fig-agreement-*.png"))) == len([t for t in TARGETS if t > 0])


@pytest.mark.slow
def test_accuracy_table_equals_summaries(built):
    groups: dict[tuple[str, float], list[float]] = {}
    for _, s in summaries(built["sweep"]):
        assert s["status"] == "finished"
        groups.setdefault((s["criterion"], s["sparsity/target"]), []).append(s["test/acc"])
    assert len(groups) == len(CRITERIA) * len(TARGETS)

    with (built["out"] / "accuracy.csv").open() as f:
        rows = {(r["series"], float(r["target"])): r for r in csv.DictReader(f)}
    assert set(rows) == set(groups)
    for key, values in groups.items():
        assert int(rows[key]["n"]) == len(SEEDS)
        assert math.isclose(float(rows[key]["test_acc_mean"]), statistics.fmean(values), rel_tol=1e-12)
        assert math.isclose(float(rows[key]["test_acc_std"]), statistics.stdev(values), rel_tol=1e-9, abs_tol=1e-15)

    table = md_table((built["out"] / "report.md").read_text(), "criterion / target sparsity")
    header, body = table[0], {r[0]: r[1:] for r in table[1:]}
    assert header[1:] == ["0.00 (dense)", "0.80 (5×)"]
    for j, target in enumerate(TARGETS):
        means = {c: statistics.fmean(groups[(c, target)]) for c in CRITERIA}
        for c in CRITERIA:
            v = groups[(c, target)]
            expected = f"{statistics.fmean(v) * 100:.2f} ± {statistics.stdev(v) * 100:.2f} (n={len(v)})"
            cell = body[c][j]
            assert cell.strip("*") == expected
            assert cell.startswith("**") == (means[c] == max(means.values())), (c, target, cell)
    html = (built["out"] / "report.html").read_text()
    best = max(CRITERIA, key=lambda c: statistics.fmean(groups[(c, 0.8)]))
    assert f"<strong>{body[best][1].strip('*')}</strong>" in html


@pytest.mark.slow
def test_jaccard_matrix_from_masks(built):
    target, layer_rows = 0.8, {}
    with (built["out"] / "jaccard.csv").open() as f:
        for r in csv.DictReader(f):
            if float(r["target"]) == target and (r["criterion_a"], r["criterion_b"]) == CRITERIA:
                layer_rows[r["layer"]] = r
    by_layer: dict[str, list[float]] = {}
    for seed in SEEDS:
        a = torch.load(run_dir(built["sweep"], CRITERIA[0], target, seed) / "masks.pt", weights_only=True)
        b = torch.load(run_dir(built["sweep"], CRITERIA[1], target, seed) / "masks.pt", weights_only=True)
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
    assert cells[CRITERIA[0]][1] == cells[CRITERIA[1]][0] == f"{np.mean(by_layer['all']):.3f}"


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
    for heading in ("Test comparison", "Overview", "Accuracy vs sparsity", "Test accuracy table",
                    "Sparsity over training", "Score distributions", "Per-layer sparsity", "Criterion agreement",
                    "Failed and unfinished runs"):
        assert re.search(rf"<h[12][^>]*>{re.escape(heading)}</h[12]>", html), heading
        assert re.search(rf"^#+ {re.escape(heading)}$", (built["out"] / "report.md").read_text(), re.M), heading


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.slow
def test_chromium_renders_the_report(built, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium not found in CI (install it: apt-get install -y chromium)")
        pytest.skip("chromium not installed")
    shot = tmp_path / "shot.png"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,4000",
           (built["out"] / "report.html").resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists(), proc.stderr[-2000:]
    from matplotlib.image import imread

    img = imread(shot)[..., :3]
    assert img.shape[0] == 4000 and img.shape[1] == 1280
    non_white = np.any(img < 0.95, axis=-1).mean()
    colours = len(np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0))
    assert non_white > 0.10, non_white  # text, tables and the embedded plots, not a blank page
    assert colours > 500, colours  # plot colours (viridis, tab10), not just black text on white
