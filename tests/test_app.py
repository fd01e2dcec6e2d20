"""The Hydra app end to end: the default job, every criterion, every model on its data, the CLI's help and
errors, and a plain (non-editable) install run from another directory."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from appkit import FAST, cli, compose, metrics, run_inprocess, summary, zeros_and_total
from fakedata import write_cifar, write_mnist

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("criterion", ["snip_momentum", "magnitude"])
def test_default_job_from_another_directory(tmp_path, criterion):
    """`python -m prunelab criterion=X` as the README runs it: MLP on digits, 90% target, default W&B (offline)."""
    run_dir = tmp_path / "run"
    proc = cli([f"criterion={criterion}", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = summary(run_dir)
    assert s["status"] == "finished" and s["criterion"] == criterion
    assert s["sparsity/target"] == 0.9
    masks = torch.load(run_dir / "masks.pt", weights_only=True)
    zeros, total = zeros_and_total(masks)
    assert zeros == math.floor(0.9 * total) == s["pruned_zeros"]
    assert s["sparsity/actual"] == pytest.approx(0.9, abs=1 / total)
    assert s["test/acc"] >= 0.95, s
    assert "test acc" in proc.stdout and "sparsity target / actual" in proc.stdout
    assert (run_dir / "config.yaml").exists() and (run_dir / ".hydra" / "overrides.yaml").exists()


@pytest.mark.parametrize("criterion", ["magnitude", "gradient", "snip", "snip_momentum", "random"])
def test_every_criterion_end_to_end(tmp_path, criterion):
    s = run_inprocess([f"criterion={criterion}", "logger=none", *FAST], tmp_path)
    masks = torch.load(tmp_path / "masks.pt", weights_only=True)
    zeros, total = zeros_and_total(masks)
    assert s["status"] == "finished" and zeros == math.floor(0.9 * total)
    rows = metrics(tmp_path)
    pruning = [r for r in rows if "sparsity/target" in r and r["step"] in (10, 20, 30, 40)]
    assert [r["step"] for r in pruning] == [10, 20, 30, 40]
    assert pruning[-1]["sparsity/target"] == pytest.approx(0.9)
    # targets only rise, and the actual sparsity (zeros in the weights) follows them exactly: floor(target * total).
    # `gradient` may keep a pruned weight again (its gradient is not masked) at value 0, so its zeros can exceed
    # the masks' count until training moves the revived weights; the final masks are still exact.
    assert all(a["sparsity/target"] <= b["sparsity/target"] for a, b in zip(pruning, pruning[1:]))
    for r in pruning:
        want = math.floor(r["sparsity/target"] * total + 1e-6)
        if criterion == "gradient":
            assert r["sparsity/actual"] * total >= want - 1e-6
        else:
            assert r["sparsity/actual"] * total == pytest.approx(want)


@pytest.mark.parametrize("pattern", ["4x1", "1x4", "2in4", "channel"])
def test_patterns_end_to_end(tmp_path, pattern):
    s = run_inprocess([f"pattern={pattern}", "criterion=snip", "logger=none", "pattern.scope=local", *FAST], tmp_path)
    target = 0.5 if pattern == "2in4" else 0.9
    assert s["sparsity/target"] == target
    for name, sp in s["sparsity/layers"].items():
        assert sp == pytest.approx(target, abs=0.02), (name, sp)


@pytest.fixture
def generated_data(tmp_path):
    write_mnist(tmp_path, "MNIST", gz=False, n_train=80, n_test=20)
    write_cifar(tmp_path, per_batch=16, n_test=16)
    return tmp_path


@pytest.mark.parametrize("model,dataset", [("lenet5", "mnist"), ("resnet20", "cifar10"), ("mlp", "fashion_mnist")])
def test_models_train_on_generated_files(tmp_path, generated_data, model, dataset):
    if dataset == "fashion_mnist":
        write_mnist(generated_data, "FashionMNIST", gz=True, n_train=40, n_test=10)
    s = run_inprocess([f"model={model}", f"dataset={dataset}", f"dataset.root={generated_data}", "logger=none",
                       "criterion=snip_momentum", "trainer.max_steps=6", "trainer.batch_size=16",
                       "schedule.start_step=1", "schedule.end_step=3", "schedule.pruning_frequency=1",
                       "trainer.eval_every=3", "trainer.progress=none"], tmp_path / "run")
    assert s["status"] == "finished" and s["model"] == model and s["dataset"] == dataset
    masks = torch.load(tmp_path / "run" / "masks.pt", weights_only=True)
    zeros, total = zeros_and_total(masks)
    assert zeros == math.floor(0.9 * total)


def test_config_interpolates_shapes_from_the_dataset():
    cfg = compose(["model=resnet20", "dataset=cifar10"])
    assert list(cfg.model.input_shape) == [3, 32, 32] and cfg.model.num_classes == 10
    assert cfg.schedule.target_sparsity == 0.9 and cfg.seed == 0
    with pytest.raises(Exception, match="not in struct|Could not override"):
        compose(["trainer.no_such_key=1"])


def test_unknown_group_option_lists_the_options(tmp_path):
    proc = cli(["criterion=nope"], cwd=tmp_path)
    assert proc.returncode == 2
    options = ", ".join(sorted(p.stem for p in (REPO / "conf" / "criterion").glob("*.yaml")))
    assert proc.stderr.strip().splitlines() == [f"prunelab: error: criterion='nope': one of {options}"]
    assert list(tmp_path.iterdir()) == []


def test_help_lists_groups_and_cfg_job_prints_the_config(tmp_path):
    proc = cli(["--help"], cwd=tmp_path)
    assert proc.returncode == 0
    options = ", ".join(sorted(p.stem for p in (REPO / "conf" / "criterion").glob("*.yaml")))
    assert f"criterion: {options}" in proc.stdout  # every option file of the group, as Hydra lists them
    for group in ("dataset:", "model:", "pattern:", "distribution:", "regrowth:", "schedule:", "optimizer:",
                  "trainer:", "logger:"):
        assert group in proc.stdout
    for text in ("prunelab report DIR", "prunelab list", "prunelab -m", "hydra.run.dir=DIR trainer.resume=true",
                 "group=default", "schedule.end=0.6"):
        assert text in proc.stdout, text
    assert "Powered by Hydra" not in proc.stdout  # our text, not Hydra's stock help
    proc = cli(["--cfg", "job", "criterion=snip_momentum"], cwd=tmp_path)
    assert proc.returncode == 0 and "criterion_type: snip_momentum" in proc.stdout and "alpha: 0.9" in proc.stdout


def test_a_run_without_a_validation_split_reports_no_validation_accuracy(tmp_path, capsys):
    """``dataset.val_fraction=0`` trains on the whole train split: there is nothing to evaluate on during
    training, so the run logs no evaluation and its summary has no validation accuracy (not 0 %, which an empty
    split would average to); the test accuracy is still measured, and the report reads the run."""
    from prunelab.app import format_summary
    from prunelab.report import main as report_main

    s = run_inprocess(["logger=none", "dataset.val_fraction=0", "trainer.eval_every=10", *FAST], tmp_path / "run")
    assert s["val/acc"] is None and s["val/loss"] is None and s["best_eval/acc"] is None
    assert s["test/acc"] > 0.5
    assert not [r for r in metrics(tmp_path / "run") if "eval/acc" in r or "eval/loss" in r]
    assert "no validation split" in capsys.readouterr().out
    table = format_summary(s)
    assert "n/a (no validation split)" in table and f"{s['test/acc']:.4f}" in table
    # the data path and the throughput: the steps' samples over the training loop's time (less than the wall time,
    # which has the set-up too)
    assert s["data_path"] == "in memory" and s["num_threads"] == 1 and s["method"] == "magnitude"
    assert s["samples_per_s"] > 60 * s["global_batch_size"] / s["wall_time_s"]
    assert f"in memory, {s['samples_per_s']:,.0f} samples/s in the training loop (evaluations included; 1 torch " \
        "thread)" in table
    assert report_main([str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
