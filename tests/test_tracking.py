"""Tracking: what a run logs, read back from real offline W&B runs with W&B's own reader (``wandb leet inspect``),
never a mock; the local record (metrics.jsonl, summary.json, masks.pt) against it; logger=none; failures; secrets.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from prunelab import tracking
from prunelab.errors import ConfigError
from prunelab.tracking import (
    ConsoleTracker,
    LocalTracker,
    Trackers,
    build_tracker,
    histograms,
    mask_image,
    resolve_wandb_mode,
    run_tags,
    score_histogram,
)
from prunelab.tracking.build import resuming_run_dir
from prunelab.tracking.histograms import _histograms_exact
from prunelab.tracking.wandb import wandb_credentials_available

from wandbkit import (WANDB_ENV, clean_env, exit_code, history, inspect_records, inspect_summary, offline_dirs,
                      run_app, run_record)

BINS = 32                      # not the default (64): the histograms must follow the config
PRUNING_STEPS = [10, 20, 30, 40]
SHORT = [
    "trainer.max_steps=60", "schedule.start_step=10", "schedule.end_step=40", "schedule.pruning_frequency=10",
    "trainer.eval_every=20", "trainer.progress=lines", f"tracking.histogram_bins={BINS}",
]
SECRET = "prunelab-test-secret-7f3c9a1e5b2d4f6a8c0e1b3d5f7a9c2e"


# --- helpers -------------------------------------------------------------------------------------------------

def row_at(rows: list[dict[str, Any]], step: int, key: str) -> dict[str, Any]:
    found = [r for r in rows if r.get("trainer/step") == step and key in r]
    assert len(found) == 1, f"{len(found)} W&B rows at trainer/step={step} with {key}"
    return found[0]


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]


def scalar_keys(row: dict[str, Any]) -> set[str]:
    """The trainer's scalars in a W&B row (W&B's own keys, the step axis, histograms and media left out)."""
    return {k for k in row if (not k.startswith(("_", "scores", "masks/", "final/")) or k == "masks/changed")
            and k != "trainer/step"}


# --- the real runs: started together (2 cores: the second runs while the first waits on I/O), read by many tests --

NONE_DRIVER = """
import atexit, sys
atexit.register(lambda: print("WANDB_IMPORTED", "wandb" in sys.modules, flush=True))
sys.argv = ["prunelab", *sys.argv[1:]]
from prunelab.__main__ import cli
cli()
"""


class Started:
    """An app subprocess started now, waited for when a test needs it (output to files: no pipe to fill)."""

    def __init__(self, base: Path, args: list[str], env: dict[str, str], code: str | None = None) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.base, self.run_dir = base, base / "run"
        cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "prunelab"]
        self._out, self._err = (base / "stdout.txt").open("w"), (base / "stderr.txt").open("w")
        self.proc = subprocess.Popen([*cmd, *args, f"hydra.run.dir={self.run_dir}"], cwd=base, env=env,
                                     stdout=self._out, stderr=self._err, text=True)

    def wait(self, timeout: float = 240) -> "Started":
        if self.proc.returncode is None:
            try:
                self.proc.wait(timeout)
            finally:
                self._out.close()
                self._err.close()
        self.returncode = self.proc.returncode
        self.stdout = (self.base / "stdout.txt").read_text()
        self.stderr = (self.base / "stderr.txt").read_text()
        return self

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Started]:
    base = tmp_path_factory.mktemp("runs")
    started = {
        # snip_momentum, W&B offline through WANDB_MODE while a (dummy) API key is set
        "offline": Started(base / "offline", ["criterion=snip_momentum", "group=cmp_test", "logger.tags=[mytag]", *SHORT],
                           clean_env(base / "home1", WANDB_API_KEY=SECRET, WANDB_MODE="offline")),
        # no login, no WANDB_MODE, logger.mode null; a NaN loss (lr=1e6) fails it at step 9
        "failed": Started(base / "failed", [*SHORT, "optimizer.lr=1e6"], clean_env(base / "home2")),
        "none": Started(base / "none", ["logger=none", "trainer.max_steps=30", "schedule.start_step=10",
                                        "schedule.end_step=20", "schedule.pruning_frequency=10",
                                        "trainer.eval_every=10"], clean_env(base / "home3"), code=NONE_DRIVER),
    }
    yield started
    for s in started.values():
        s.kill()


@pytest.fixture(scope="module")
def offline_run(runs) -> dict[str, Any]:
    """60 steps, pruning at 10/20/30/40, read back with W&B's reader."""
    proc = runs["offline"].wait()
    run_dir = runs["offline"].run_dir
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wdir,) = offline_dirs(run_dir)
    records = inspect_records(wdir)
    return {"run_dir": run_dir, "wandb_dir": wdir, "proc": proc, "records": records, "rows": history(records),
            "summary": inspect_summary(wdir), "masks": torch.load(run_dir / "masks.pt"),
            "metrics": read_metrics(run_dir), "local_summary": json.loads((run_dir / "summary.json").read_text())}


def test_score_histograms_at_every_pruning_step(offline_run):
    masks, rows = offline_run["masks"], offline_run["rows"]
    assert set(masks) == {"fc1", "fc2"}
    numel = {name: m.numel() for name, m in masks.items()}
    numel["all"] = sum(numel.values())
    local = {(r["step"], r["layer"]): r for r in map(json.loads, (offline_run["run_dir"] / "scores.jsonl").open())}
    assert sorted({step for step, _ in local}) == PRUNING_STEPS
    for step in PRUNING_STEPS:
        for layer, n in numel.items():
            row = row_at(rows, step, f"scores/{layer}._type")
            assert row[f"scores/{layer}._type"] == "histogram"
            counts, edges = row[f"scores/{layer}.values"], row[f"scores/{layer}.bins"]
            assert len(counts) == BINS and len(edges) == BINS + 1
            assert all(a < b for a, b in zip(edges, edges[1:]))
            zeros = row[f"scores_zeros/{layer}"]
            assert sum(counts) + zeros == n, (step, layer)
            assert zeros >= 0
            assert (counts, zeros) == (local[step, layer]["counts"], local[step, layer]["zeros"])  # = scores.jsonl
        assert row["scores_zeros/all"] == sum(row[f"scores_zeros/{name}"] for name in masks)


def test_sparsity_matches_masks_and_metrics_jsonl(offline_run):
    masks, rows, metrics = offline_run["masks"], offline_run["rows"], offline_run["metrics"]
    local = {r["step"]: r for r in metrics}
    for step in PRUNING_STEPS:
        row = row_at(rows, step, "sparsity/actual")
        assert row["sparsity/actual"] == local[step]["sparsity/actual"]
        assert row["sparsity/target"] == local[step]["sparsity/target"]
    zeros = sum(int((~m).sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    last = row_at(rows, PRUNING_STEPS[-1], "sparsity/actual")
    assert last["sparsity/actual"] == pytest.approx(zeros / total, abs=1e-12)
    assert last["sparsity/target"] == pytest.approx(0.9)
    for name, m in masks.items():
        assert last[f"sparsity/{name}"] == pytest.approx(int((~m).sum()) / m.numel(), abs=1e-12)
    # the run summary (W&B) and summary.json agree with the masks too
    s = offline_run["summary"]["summary"]
    assert s["sparsity/actual"] == pytest.approx(zeros / total, abs=1e-12)
    assert s["sparsity/actual"] == offline_run["local_summary"]["sparsity/actual"]


def test_metrics_jsonl_equals_wandb_history(offline_run):
    rows = [r for r in offline_run["rows"] if scalar_keys(r)]
    by_step = {}
    for r in rows:
        assert r["trainer/step"] not in by_step, f"two W&B rows of scalars at step {r['trainer/step']}"
        by_step[r["trainer/step"]] = r
    local = {r["step"]: r for r in offline_run["metrics"]}
    assert set(by_step) == set(local)
    for step, rec in local.items():
        row = by_step[step]
        assert row["_step"] == step  # W&B's own step is the trainer's step
        assert scalar_keys(row) == set(rec) - {"step"}, step
        for k in scalar_keys(row):
            assert row[k] == rec[k], (step, k)
    names = set().union(*(scalar_keys(r) for r in rows))
    assert {"train/loss", "train/acc", "eval/loss", "eval/acc", "lr", "sparsity/target", "sparsity/actual",
            "sparsity/fc1", "sparsity/fc2"} <= names


def test_run_identity_config_and_step_axis(offline_run):
    records, s = offline_run["records"], offline_run["summary"]
    run = run_record(records)
    assert run["run_group"] == s["config"]["group"] == "cmp_test"  # the comparison's group
    assert run["job_type"] == "snip_momentum"
    assert run["display_name"] == "snip_momentum-s0.90-seed0"
    assert run["tags"] == ["criterion:snip_momentum", "pattern:1x1", "distribution:global", "model:mlp", "dataset:digits",
                           "method:snip_momentum", "mytag"]
    assert s["config"]["criterion"]["criterion_type"] == "snip_momentum"
    assert s["config"]["tracking"]["histogram_bins"] == BINS
    assert s["config"]["schedule"]["end_step"] == 40
    assert s["state"] == "finished" and s["exit_code"] == 0
    metrics = [r["metric"] for r in records if r["type"] == "metric"]
    assert any(m.get("glob_name") == "*" and m.get("step_metric") == "trainer/step" for m in metrics)
    # the id is kept in the run directory, and the W&B files are inside it
    assert (offline_run["run_dir"] / "wandb_run_id").read_text().strip() == run["run_id"]
    assert offline_run["wandb_dir"].is_relative_to(offline_run["run_dir"])


def test_final_masks_table_and_summary(offline_run):
    rows, masks, local = offline_run["rows"], offline_run["masks"], offline_run["local_summary"]
    (final,) = [r for r in rows if "final/sparsity_table._type" in r]
    assert final["trainer/step"] == 59
    for name, m in masks.items():
        assert m.dtype == torch.bool
        assert final[f"masks/{name}._type"] == "image-file"
        out, inn = m.shape[0], m[0].numel()
        assert (final[f"masks/{name}.height"], final[f"masks/{name}.width"]) == (out, inn)
    assert final["final/sparsity_table.nrows"] == len(masks) and final["final/sparsity_table.ncols"] == 5
    table = json.loads((offline_run["wandb_dir"] / "files" / final["final/sparsity_table.path"]).read_text())
    assert table["columns"] == ["layer", "shape", "params", "zeros", "sparsity"]
    for layer, shape, params, zeros, sp in table["data"]:
        m = masks[layer]
        assert (shape, params, zeros) == (str(list(m.shape)), m.numel(), int((~m).sum()))
        assert sp == pytest.approx(zeros / params)
    s = offline_run["summary"]["summary"]
    for key in ("val/acc", "test/acc", "best_eval/acc", "params/nonzero", "params/total", "params/kept_fraction",
                "sparsity/target"):
        assert s[key] == local[key], key
    assert s["status"] == "finished"
    assert s["sparsity/layers"] == local["sparsity/layers"]
    # compression is weights over weights kept, exactly (1 / (1 - s) of the rounded fraction is off in the last bits)
    zeros, total = sum(int((~m).sum()) for m in masks.values()), sum(m.numel() for m in masks.values())
    assert s["compression"] == local["compression"] == total / (total - zeros)


def test_no_secret_written(offline_run):
    """WANDB_API_KEY was set (to a dummy) for the whole run: it appears in no file under the run directory."""
    hits = [str(p) for p in offline_run["run_dir"].rglob("*")
            if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert hits == []
    assert SECRET not in offline_run["proc"].stdout + offline_run["proc"].stderr
    assert "wandb sync" in offline_run["proc"].stderr


# --- other real runs -----------------------------------------------------------------------------------------

def test_logger_none_never_touches_wandb(runs):
    proc = runs["none"].wait()
    run_dir = runs["none"].run_dir
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "WANDB_IMPORTED False" in proc.stdout
    assert not list(runs["none"].base.rglob("wandb*")), "W&B files were written"
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    metrics = read_metrics(run_dir)
    assert metrics[-1]["step"] == 29 and any("sparsity/actual" in r for r in metrics)
    assert (run_dir / "masks.pt").exists() and (run_dir / "scores.jsonl").exists()


def test_failed_run_without_credentials_is_offline_and_marked_failed(runs):
    """No login, no WANDB_MODE, logger.mode null: offline with the sync command; a NaN loss fails the run, and the
    W&B run is still finished, marked failed."""
    proc = runs["failed"].wait()
    run_dir = runs["failed"].run_dir
    assert proc.returncode != 0
    assert "no credentials" in proc.stderr and "wandb sync" in proc.stderr
    local = json.loads((run_dir / "summary.json").read_text())
    assert local["status"] == "failed" and "NonFiniteLoss" in local["error"]
    (wdir,) = offline_dirs(run_dir)
    s = inspect_summary(wdir)
    assert s["state"] == "failed" and s["exit_code"] == 1
    assert s["summary"]["status"] == "failed"


@pytest.mark.slow
def test_multirun_jobs_are_separate_wandb_runs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_app(["-m", "seed=0,1", "trainer.max_steps=20", "schedule.start_step=5",
                    "schedule.end_step=10", "schedule.pruning_frequency=5", "trainer.eval_every=10",
                    "trainer.progress=auto", f"hydra.sweep.dir={sweep}"], cwd=tmp_path,
                   env=clean_env(tmp_path / "home", WANDB_MODE="offline"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "summary.json").exists())
    assert len(jobs) == 2
    ids, names = set(), set()
    for job in jobs:
        (wdir,) = offline_dirs(job)
        records = inspect_records(wdir)
        run = run_record(records)
        ids.add(run["run_id"])
        names.add(run["display_name"])
        assert run["run_group"] == "default"
        assert exit_code(records) == 0
        assert (job / "wandb_run_id").read_text().strip() == run["run_id"]
    assert len(ids) == 2 and names == {"magnitude-s0.90-seed0", "magnitude-s0.90-seed1"}
    assert "[prunelab] step 20/20" in proc.stderr  # plain progress lines in a sweep


# --- the W&B backend on its own (real offline runs, in this process) --------------------------------------------

def test_resumed_run_dir_continues_the_same_wandb_run_without_duplicated_steps(tmp_path, monkeypatch):
    for k in WANDB_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "cfg"))
    scores = {"a": torch.rand(6, 5), "b": torch.rand(4, 3)}

    def tracker(resume: bool) -> tracking.WandbTracker:
        return tracking.WandbTracker(tmp_path, name="t", project="prunelab-test", group="g", job_type="magnitude",
                                     mode="offline", bins=8, resume=resume, config={"x": 1})

    first = tracker(resume=False)
    for step in range(0, 6):
        first.log_histograms(histograms(scores, 8, True), step)
        first.log({"train/loss": float(step)}, step)
    state = first.state_dict()  # a checkpoint at step 3 would hold less; the run went on to step 5, then died
    first.finish("interrupted")
    assert state["last_step"] == 5
    run_id = (tmp_path / "wandb_run_id").read_text().strip()

    second = tracker(resume=True)
    second.load_state_dict({"run_id": run_id, "last_step": 3})
    for step in range(4, 9):  # resumed from the checkpoint of step 3: steps 4 and 5 come again
        second.log({"train/loss": float(step)}, step)
    second.finish("finished")
    assert second.run_id == run_id

    first_dir, second_dir = offline_dirs(tmp_path)
    steps = []
    for d in (first_dir, second_dir):
        records = inspect_records(d)
        assert run_record(records)["run_id"] == run_id
        steps += [r["trainer/step"] for r in history(records) if "train/loss" in r]
    assert steps == list(range(9))
    assert run_record(records).get("resume") is True  # (records: the second, resumed part)
    assert exit_code(inspect_records(first_dir)) == 255 and exit_code(records) == 0  # interrupted, then finished


def test_linear_scale_keeps_zeros_in_the_bins(tmp_path, monkeypatch):
    for k in WANDB_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "cfg"))
    (tmp_path / "wandb_run_id").write_text("oldrun12\n")  # a previous run here, but this is no resume:
    t = tracking.WandbTracker(tmp_path, name="lin", project="prunelab-test", mode="offline", bins=16,
                              log_scale=False)
    assert t.run_id != "oldrun12" and (tmp_path / "wandb_run_id").read_text().strip() == t.run_id  # a new W&B run
    s = torch.rand(10, 10)
    s[:3] = 0
    t.log_scores({"w": s}, 7)
    t.log({"sparsity/actual": 0.3}, 7)
    t.finish("finished")
    (wdir,) = offline_dirs(tmp_path)
    row = row_at(history(inspect_records(wdir)), 7, "scores/w._type")
    assert len(row["scores/w.values"]) == 16 and sum(row["scores/w.values"]) == 100
    assert row["scores_zeros/w"] == 0 and row["scores/w.bins"][0] == 0.0
    assert row["sparsity/actual"] == 0.3  # scores and scalars of one step: one row


# --- pieces, without W&B ---------------------------------------------------------------------------------------

def test_score_histogram_bins_and_zeros():
    s = torch.cat([torch.zeros(7), torch.logspace(-6, 2, 93)])
    h = score_histogram(s, bins=20)
    assert len(h["counts"]) == 20 and len(h["edges"]) == 21
    assert h["zeros"] == 7 and sum(h["counts"]) + h["zeros"] == 100 == h["numel"]
    assert h["edges"][0] == pytest.approx(-6, abs=1e-5) and h["edges"][-1] == pytest.approx(2, abs=1e-5)
    lin = score_histogram(s, bins=20, log_scale=False)
    assert lin["zeros"] == 0 and sum(lin["counts"]) == 100
    hs = histograms({"a": s, "b": torch.ones(3, 4)}, 10, True)
    assert set(hs) == {"a", "b", "all"} and sum(hs["all"]["counts"]) + hs["all"]["zeros"] == 112


def test_histograms_are_computed_once_for_all_backends(tmp_path, monkeypatch):
    calls = []
    real = tracking.histograms
    monkeypatch.setattr(tracking.base, "histograms", lambda *a: calls.append(a) or real(*a))

    class Recorder(LocalTracker):
        pass

    a, b = LocalTracker(tmp_path / "a", bins=8), Recorder(tmp_path / "b", bins=8)
    Trackers(a, b).log_scores({"w": torch.rand(5, 5)}, 3)
    assert len(calls) == 1
    assert (tmp_path / "a" / "scores.jsonl").read_text() == (tmp_path / "b" / "scores.jsonl").read_text()


def test_mask_image_views_and_downsampling():
    conv = torch.rand(8, 3, 3, 3) > 0.5
    pic, factor = mask_image(conv, min_side=1)
    assert pic.shape == (8, 27) and factor == (1, 1)
    view = conv.permute(0, 2, 3, 1).reshape(8, -1)  # the patterns' 2-D view: input channels fastest
    assert ((pic == 255) == view.numpy()).all() and set(pic.flatten().tolist()) <= {0, 255}
    big = torch.ones(1000, 2000, dtype=torch.bool)
    big[:, :1000] = False
    pic, factor = mask_image(big, max_side=500)
    assert factor == (2, 4) and pic.shape == (500, 500)
    assert (pic[:, :250] == 0).all() and (pic[:, 250:] == 255).all()
    small, _ = mask_image(torch.ones(4, 10, dtype=torch.bool), min_side=32, max_side=512)
    assert small.shape == (32, 80)  # enlarged by an integer factor


def test_mode_without_credentials_is_offline(tmp_path, monkeypatch):
    for k in WANDB_ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "cfg"))
    assert not wandb_credentials_available()
    assert resolve_wandb_mode(None) == ("offline", True)
    assert resolve_wandb_mode("online") == ("online", False)
    with pytest.raises(ConfigError, match="logger.mode"):
        resolve_wandb_mode("sometimes")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode(None) == (None, False)  # wandb reads WANDB_MODE itself
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "x" * 40 + "\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert wandb_credentials_available() and resolve_wandb_mode(None) == (None, False)
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    assert not wandb_credentials_available()  # the login is for another host
    monkeypatch.setenv("WANDB_API_KEY", "y" * 40)
    assert wandb_credentials_available()


def test_tags_resume_and_progress_in_multirun(tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({
        "criterion": {"criterion_type": "snip"}, "pattern": {"type": "4x1", "scope": "local"},
        "model": {"name": "lenet5"}, "dataset": {"name": "mnist"}, "logger": {"backend": "none", "tags": ["x"]},
        "trainer": {"progress": "auto", "resume": False}, "tracking": {"histogram_bins": 8},
    })
    assert run_tags(cfg) == ["criterion:snip", "pattern:4x1", "distribution:uniform", "model:lenet5", "dataset:mnist",
                             "method:snip", "x"]
    assert resuming_run_dir(True, tmp_path) and not resuming_run_dir(False, tmp_path)
    assert resuming_run_dir(str(tmp_path / "checkpoint.pt"), tmp_path)
    assert not resuming_run_dir(str(tmp_path / "other" / "checkpoint.pt"), tmp_path)

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr(tracking.build, "in_hydra_multirun", lambda: True)
    t = build_tracker(cfg, tmp_path, total_steps=10, name="n")
    (console,) = [x for x in t.trackers if isinstance(x, ConsoleTracker)]
    assert console.bar is False
    assert not any(type(x).__name__ == "WandbTracker" for x in t.trackers)
    t.finish("finished")
    with pytest.raises(ConfigError, match="logger.backend"):
        build_tracker(OmegaConf.merge(cfg, {"logger": {"backend": "tensorboard"}}), tmp_path, 10, "n")
    with pytest.raises(ConfigError, match="histogram_bins"):
        build_tracker(OmegaConf.merge(cfg, {"logger": {"backend": "wandb"}, "tracking": {"histogram_bins": 1000}}),
                      tmp_path, 10, "n")


def test_histograms_share_one_range_and_match_numpy():
    """Per-layer counts on the step's shared log10 bins equal numpy's histogram on the same edges; `all` is
    their sum; zeros are counted apart."""
    import numpy as np

    gen = torch.Generator().manual_seed(0)
    a = torch.rand(1000, generator=gen) * 1e-3
    a[:100] = 0
    b = torch.rand(40, 25, generator=gen) * 10
    hs = histograms({"a": a, "b": b}, 16, True)
    edges = np.asarray(hs["all"]["edges"])
    assert hs["a"]["edges"] == hs["b"]["edges"] == hs["all"]["edges"]
    assert edges[0] == pytest.approx(np.log10(a[a > 0].min().item()), abs=1e-6)
    assert edges[-1] == pytest.approx(np.log10(b.max().item()), abs=1e-6)
    for name, t in (("a", a), ("b", b)):
        v = t.reshape(-1).numpy()
        want, _ = np.histogram(np.log10(v[v > 0]), bins=edges)
        # numpy's last bin is closed like ours; values on an inner edge may fall either side by rounding
        assert np.abs(np.asarray(hs[name]["counts"]) - want).sum() <= 2
        assert sum(hs[name]["counts"]) == (v > 0).sum() and hs[name]["zeros"] == (v == 0).sum()
    assert hs["all"]["counts"] == [x + y for x, y in zip(hs["a"]["counts"], hs["b"]["counts"])]
    assert hs["all"]["zeros"] == 100 and hs["all"]["numel"] == 2000



@pytest.mark.parametrize("log_scale", [True, False])
def test_histograms_fast_path_equals_exact_path(log_scale):
    """All-finite scores take the fast path (zeros clamped into bin 0, then moved out by count); it gives the
    same counts, zeros and edges as the exact path that tests every entry."""
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(50, 40, generator=gen) * 1e-4
    a[:, :30] = 0  # pruned weights' scores
    b = torch.logspace(-7, 3, 301)  # values on many edges
    c = torch.zeros(5, 5)  # a layer with nothing positive
    scores = {"a": a, "b": b, "c": c}
    fast = histograms(scores, 24, log_scale)
    exact = _histograms_exact({n: t.reshape(-1).float() for n, t in scores.items()}, 24, log_scale)
    assert set(fast) == set(exact) == {"a", "b", "c", "all"}
    for name in fast:
        assert fast[name]["counts"] == exact[name]["counts"], name
        assert fast[name]["zeros"] == exact[name]["zeros"] and fast[name]["numel"] == exact[name]["numel"]
        assert fast[name]["edges"] == pytest.approx(exact[name]["edges"], abs=1e-5)
    assert fast["c"]["zeros"] == (25 if log_scale else 0) and fast["a"]["zeros"] == (1500 if log_scale else 0)


def test_histograms_count_non_finite_scores_apart():
    s = torch.tensor([0.0, 1e-3, 1e-2, 1e-1, float("nan"), float("inf"), 1.0])
    for log_scale, zeros in ((True, 3), (False, 2)):
        h = histograms({"l": s}, 4, log_scale)["l"]
        assert h["zeros"] == zeros and sum(h["counts"]) == 7 - zeros
        assert h["edges"][0] == pytest.approx(-3.0 if log_scale else 0.0) and h["edges"][-1] == pytest.approx(0.0 if log_scale else 1.0)

def test_signed_scores_are_binned_linearly_not_counted_as_zeros():
    """GraSP's and movement's scores are signed: on a log scale every negative one went to the zeros column (47.9%
    'zeros' before anything was pruned). A step with a negative score is binned linearly, every score in a bin."""
    s = torch.tensor([-2.0, -0.5, 0.0, 0.25, 1.0, 3.0])
    hs = histograms({"l": s, "m": torch.tensor([1e-3, 1.0])}, 5, True)
    h = hs["l"]
    assert h["log_scale"] is False and hs["all"]["log_scale"] is False
    assert h["zeros"] == 0 and sum(h["counts"]) == 6  # the one true zero is in a bin too, as on a linear scale
    assert h["edges"][0] == pytest.approx(-2.0) and h["edges"][-1] == pytest.approx(3.0)
    assert h["counts"] == [1, 1, 2, 1, 1]  # bins of width 1 from -2: [-2, -1), [-1, 0), [0, 1), [1, 2), [2, 3]
    positive = histograms({"l": s.abs()}, 5, True)["l"]
    assert positive["log_scale"] is True and positive["zeros"] == 1  # unsigned scores keep the log scale


def test_histogram_cost_benchmark_smoke(tmp_path):

    out = tmp_path / "h.json"
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "histogram_cost.py"
    proc = subprocess.run([sys.executable, str(bench), "--quick", "--json", str(out)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"mlp_784_300_100", "resnet20_convs"}
    assert all(r["mask_update_ms"] > 0 and r["histograms_ms"] > 0 and r["params"] > 0 for r in res.values())


def test_console_lines_keep_one_field_order(capsys):
    """A resumed run's first logged row may hold an evaluation before any training loss: the progress line still
    reads loss, acc, val_acc, sparsity, in that order."""
    console = ConsoleTracker(total_steps=4, every=2, bar=False)
    console.log({"eval/acc": 0.5, "sparsity/actual": 0.25}, step=0)
    console.log({"train/loss": 1.5, "train/acc": 0.75}, step=1)
    line = capsys.readouterr().err.strip()
    assert line.startswith("[prunelab] step 2/4  loss=1.5  acc=0.75  val_acc=0.5  sparsity=0.25  ("), line
