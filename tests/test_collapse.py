"""``prunelab collapse``: the bisection, magnitude's collapse point on the digits MLP computed by hand from the
initial weights, SynFlow reaching the one-weight-per-layer bound (Tanaka et al. 2020), and the command's files
and one-line errors."""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from appkit import compose, env  # noqa: E402

from prunelab import collapse, models  # noqa: E402
from prunelab.training.checkpoint import seed_everything  # noqa: E402


def test_bisection_brackets_the_largest_compression_without_collapse():
    lo, hi, emptied, evals = collapse.critical_compression(lambda c: ["fc"] if c > 37.5 else [], 1000.0, 0.01)
    assert lo <= 37.5 < hi and hi / lo <= 1.01 and emptied == ["fc"]
    assert evals[0] == (1000.0, True) and len(evals) <= 12
    assert collapse.critical_compression(lambda c: [], 500.0, 0.01)[:3] == (500.0, None, [])


def kept_at(compression: float, n: int) -> int:
    return n - math.floor(round((1 - 1 / compression) * n, 6))


def test_magnitude_collapses_where_the_initial_weights_say_and_synflow_reaches_the_bound():
    """Global magnitude keeps the K largest |W|: fc2 (init bound 1/16) empties once all K are fc1 weights larger
    than fc2's largest, i.e. for K <= M = #{fc1 weights > max |fc2|}. The largest compression without collapse
    is the largest with K >= M + 1 kept, about N / (M + 1) (6x here: half of fc1 exceeds 1/16)."""
    torch.set_num_threads(1)
    results, upper, _ = collapse.run(["magnitude", "synflow"], [0], ["logger=none"], 0.01, log=lambda s: None)
    cfg = compose(["logger=none"])
    seed_everything(0)
    model = models.build(cfg.model)
    fc1, fc2 = model.fc1.weight.detach().abs(), model.fc2.weight.detach().abs()
    n = fc1.numel() + fc2.numel()
    m = int((fc1 > fc2.max()).sum())
    assert upper == n / 2
    mag, syn = results
    assert mag.criterion == "magnitude" and mag.emptied == ["fc2"]
    assert kept_at(mag.lo, n) >= m + 1 > m >= kept_at(mag.hi, n)  # the bracket holds the hand-computed point
    assert mag.hi / mag.lo <= 1.01 and 5.5 < mag.lo < 6.5
    assert (syn.criterion, syn.lo, syn.hi) == ("synflow", upper, None)  # no collapse up to one weight per layer


@pytest.mark.slow
def test_the_collapse_command_writes_table_csv_and_plot(tmp_path):
    import subprocess

    out = tmp_path / "col"
    proc = subprocess.run([sys.executable, "-m", "prunelab", "collapse", "--criteria", "magnitude,random", "--seeds",
                           "0,1", "--out", str(out), "logger=none"],
                          cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (out / "collapse.md").read_text()
    assert "| magnitude |" in table and "| random |" in table and "N / L = 24,576" in table
    rows = list(csv.DictReader((out / "collapse.csv").open()))
    assert [(r["criterion"], r["seed"]) for r in rows] == [("magnitude", "0"), ("magnitude", "1"), ("random", "0"),
                                                           ("random", "1")]
    assert all(1 < float(r["max_compression"]) <= 24576 for r in rows)
    assert (out / "collapse.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, key", [
    (["--criteria", "bogus"], "criterion.criterion_type='bogus'"),
    (["--criteria", "magnitude", "criterion.rounds=3"], "criterion.rounds='3'"),
    (["--seeds", "x"], "--seeds='x'"),
    (["--tol", "0"], "--tol=0.0"),
])
def test_collapse_errors_are_one_line_and_write_nothing(tmp_path, capsys, args, key):
    assert collapse.main([*args, "--out", str(tmp_path / "no"), "logger=none"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"prunelab: error: {key}")
    assert not (tmp_path / "no").exists()



def test_a_streamed_dataset_prunes_with_the_in_memory_calibration_batches(tmp_path):
    """The collapse command on a split that streams (CIFAR-10 with dataset.in_memory=false: a SampleDataset)
    reads its calibration samples one by one: the same batches, hence the same SNIP-at-init masks, as the split
    held in memory."""
    from fakedata import write_cifar

    from prunelab.data import SampleDataset

    torch.set_num_threads(1)
    write_cifar(tmp_path, per_batch=9, n_test=11)  # 45 train images: 40 train + 5 val
    masks = {}
    for in_memory in (True, False):
        init = collapse.InitPruning(compose([
            "logger=none", "schedule=at_init", "criterion=snip_init", "criterion.batches=2", "trainer.batch_size=8",
            "dataset=cifar10",
            f"dataset.root={tmp_path}", "dataset.augment=false", f"dataset.in_memory={in_memory}"]))
        assert isinstance(init.train, SampleDataset) is not in_memory
        pruner = init._pruner(0.9)
        pruner.on_train_begin()
        pruner.on_step_begin(0)
        masks[in_memory] = {n: m.clone() for n, m in pruner.masks.items()}
    kept = sum(int(m.sum()) for m in masks[True].values()) / sum(m.numel() for m in masks[True].values())
    assert 0.05 < kept < 0.15 and masks[True].keys() == masks[False].keys()
    assert all(torch.equal(masks[True][n], masks[False][n]) for n in masks[True])
