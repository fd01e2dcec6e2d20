"""The report reads what it can: a run directory with one unreadable input is listed with the reason (never a
traceback), and runs that differ only in how they were executed (threads, device, logger, progress, checkpoint
period) stay one series. Real run directories, corrupted one input each; the report through its CLI."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from appkit import FAST, cli, env


@pytest.mark.slow
def test_unreadable_runs_are_listed_with_the_reason(tmp_path):
    good = tmp_path / "runs" / "good"
    proc = cli(["logger=none", *FAST, f"hydra.run.dir={good}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = good.parent

    def copy(name: str):
        shutil.copytree(good, runs / name)
        return runs / name

    (copy("summary_list") / "summary.json").write_text("[1, 2, 3]\n")
    metrics = copy("metrics_binary") / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join(lines[:2]) + b'{"step": 5, "x": 1\xff}\n' + b"".join(lines[2:]))
    masks = copy("masks_truncated") / "masks.pt"
    masks.write_bytes(masks.read_bytes()[: masks.stat().st_size // 2])
    scores = copy("scores_bad_line") / "scores.jsonl"
    lines = scores.read_text().splitlines(keepends=True)
    scores.write_text("".join(lines[:1]) + '{"step": 10, "layer": "fc1", "counts": "many"}\n' + "".join(lines[1:]))
    # the same run, executed otherwise: more threads, another device name, W&B, progress lines, another period,
    # another data loader (the streaming path gives the same batches)
    knobs = copy("other_execution")
    cfg = yaml.safe_load((knobs / "config.yaml").read_text())
    cfg["trainer"].update(num_threads=2, device="cpu", progress="lines", checkpoint_every=7, deterministic=True,
                          workers=0, pin_memory=False, persistent_workers=False, prefetch_factor=4)
    cfg["dataset"].update(in_memory=False, memory_budget_gb=0.5)
    cfg["logger"].update(backend="wandb")
    (knobs / "config.yaml").write_text(yaml.safe_dump(cfg))

    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "prunelab", "report", str(runs), "--out", str(out)],
                          capture_output=True, text=True, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout

    from prunelab.report.data import load_runs

    found = {r.path.name: r for r in load_runs([runs])}
    reasons = {
        "summary_list": "summary.json holds a list, not an object",
        "metrics_binary": "metrics.jsonl is not UTF-8 text",
        "masks_truncated": "masks.pt is unreadable",
        "scores_bad_line": "scores.jsonl line 2: counts and edges are not a histogram",
    }
    for name, reason in reasons.items():
        assert found[name].status == "unreadable" and reason in found[name].error, (name, found[name].error)
    assert found["good"].finished and found["other_execution"].finished
    assert found["good"].series == found["other_execution"].series == "magnitude"  # one series, no setting label
    listed = (out / "runs.csv").read_text() if (out / "runs.csv").exists() else ""
    text = listed + "".join(p.read_text() for p in out.glob("*.md"))
    for name, reason in reasons.items():
        assert reason in text, (name, reason)
