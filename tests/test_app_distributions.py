"""The new criteria and distributions through the app on digits: every criterion with its default distribution and
every distribution with magnitude (in-process, a few steps each), the per-layer targets printed, in the summary and
in W&B's summary (read back with W&B's reader), the one-line refusals, and the distributions_digits sweep preset."""
from __future__ import annotations

import json
import math

import pytest
import torch

from appkit import cli, compose, metrics, run_inprocess, summary
from test_tracking import inspect_summary, offline_dirs

LEAN = ["trainer.max_steps=30", "schedule.start_step=5", "schedule.end_step=20", "schedule.pruning_frequency=5",
        "trainer.eval_every=15", "trainer.progress=none", "logger=none"]
#: (overrides, distribution in force)
CASES = [
    (["criterion=taylor"], "global"),
    (["criterion=movement"], "global"),
    (["criterion=lamp"], "global"),
    (["criterion=wanda"], "per_row"),
    (["criterion=wanda", "pattern=2in4"], "per_row"),
    (["criterion=taylor", "pattern=channel", "distribution=erk"], "erk"),
    (["distribution=uniform"], "uniform"),
    (["distribution=erk"], "erk"),
    (["distribution=er"], "er"),
    (["distribution=per_row"], "per_row"),
]


def pruned_per_layer(run_dir):
    masks = torch.load(run_dir / "masks.pt", weights_only=True)
    return {n: (int((~m).sum()), m.numel()) for n, m in masks.items()}, masks


@pytest.mark.slow
def test_criteria_and_distributions_end_to_end(tmp_path):
    for i, (overrides, dist) in enumerate(CASES):
        run_dir = tmp_path / f"run{i}"
        s = run_inprocess([*overrides, *LEAN], run_dir)
        what = f"{overrides}: {s}"
        assert s["status"] == "finished" and s["distribution"] == dist, what
        layers, masks = pruned_per_layer(run_dir)
        target = s["sparsity/target"]
        if dist == "global":
            assert "sparsity/layer_targets" not in s, what
            zeros, total = sum(z for z, _ in layers.values()), sum(n for _, n in layers.values())
            assert zeros == math.floor(target * total), what
        else:  # each layer exactly at the target the distribution gave it (and that the summary records)
            assert set(s["sparsity/layer_targets"]) == set(layers), what
            for name, (zeros, numel) in layers.items():
                assert zeros == round(s["sparsity/layer_targets"][name] * numel), (what, name)
        if "pattern=2in4" in overrides:  # 2:4 at 0.5: every group of 4 inputs keeps exactly 2
            for m in masks.values():
                assert bool((m.reshape(m.shape[0], -1, 4).sum(-1) == 2).all()), what
        if dist == "per_row" and "pattern=2in4" not in overrides:
            for m in masks.values():
                assert len(set((~m).sum(1).tolist())) == 1, what  # every row lost the same number
        pruning = [r for r in metrics(run_dir) if "masks/changed" in r]  # logged where masks change
        assert [r["step"] for r in pruning] == [5, 10, 15, 20], what


@pytest.mark.slow
def test_layer_targets_printed_summarised_and_in_wandb(tmp_path):
    """The layer table at start shows each layer's ERK target; the summary and W&B's run summary carry them."""
    run_dir = tmp_path / "run"
    args = ["distribution=erk", *LEAN[:-1], f"hydra.run.dir={run_dir}"]  # default logger: W&B, offline
    home = tmp_path / "home"  # no W&B credentials of this machine: offline
    proc = cli(args, cwd=tmp_path, HOME=str(home), WANDB_CONFIG_DIR=str(home / ".config" / "wandb"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    targets = summary(run_dir)["sparsity/layer_targets"]
    # digits MLP fc1 [256, 64], fc2 [128, 256] at 0.9: 14149 / 16384 and 30087 / 32768 (hand-solved in
    # test_distributions.test_erk_targets_of_the_default_mlp_by_hand)
    assert targets == pytest.approx({"fc1": 14149 / 16384, "fc2": 30087 / 32768})
    table = {ln.split()[0]: ln for ln in proc.stdout.splitlines() if ln.startswith(("fc1 ", "fc2 ", "head "))}
    assert f"{targets['fc1']:.4f}  pruned" in table["fc1"] and f"{targets['fc2']:.4f}  pruned" in table["fc2"]
    (wdir,) = offline_dirs(run_dir)
    logged = inspect_summary(wdir)["summary"]["sparsity/layer_targets"]
    assert logged == pytest.approx(targets)


def test_lamp_with_a_per_layer_distribution_is_one_line_exit_2_before_any_work(tmp_path):
    run_dir = tmp_path / "run"
    proc = cli(["criterion=lamp", "distribution=uniform", "logger=none", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("prunelab: error: distribution='uniform': global for criterion lamp (LAMP rescales"), last
    assert "Traceback" not in proc.stderr
    assert not any(p.name != "prunelab.log" for p in run_dir.rglob("*")), "a refused run wrote files"


@pytest.mark.parametrize("args, message", [
    (["criterion=lamp", "distribution=erk"], "distribution='erk': global for criterion lamp"),
    (["distribution=per_row", "pattern=channel"], "distribution='per_row': a pattern with several blocks per output"),
    (["distribution=erk", "distribution.power_scale=-1"], "distribution.power_scale=-1: a number >= 0"),
    (["criterion=taylor", "criterion.momentum=2"], "criterion.momentum=2.0: a number in [0, 1)"),
    (["criterion=wanda", "criterion.batches=0"], "criterion.batches=0: an integer >= 1"),
])
def test_bad_settings_are_refused_by_validation(args, message):
    from prunelab.app import validate
    from prunelab.errors import ConfigError
    from prunelab.pruner import Pruner

    cfg = compose([*args, "logger=none"])
    with pytest.raises(ConfigError) as err:
        validate(cfg)
        from prunelab import models
        Pruner.from_config(models.build(cfg.model), cfg, head="head")  # criterion options: at construction
    assert str(err.value).startswith(message), str(err.value)


def test_distributions_preset_composes(tmp_path):
    proc = cli(["+experiment=distributions_digits", "--cfg", "hydra"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "criterion: magnitude,snip_momentum,taylor,movement,wanda" in proc.stdout
    assert "distribution: global,uniform,erk" in proc.stdout
    assert "JoblibLauncher" in proc.stdout
    job = compose(["+experiment=distributions_digits", "criterion=wanda", "distribution=erk"])
    assert job.group == "distributions_digits" and job.distribution.name == "erk"


@pytest.mark.slow
def test_distributions_preset_tiny_multirun(tmp_path):
    """The preset's sweep, cut to 2 x 2 jobs of a few steps: each job runs with the distribution it was given."""
    sweep = tmp_path / "sweep"
    proc = cli(["+experiment=distributions_digits", "criterion=taylor,wanda", "distribution=global,erk",
                "schedule.target_sparsity=0.9", "seed=0", *LEAN, f"hydra.sweep.dir={sweep}"], cwd=tmp_path,
               timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = [json.loads((d / "summary.json").read_text()) for d in sorted(sweep.iterdir()) if d.is_dir()]
    assert sorted((j["criterion"], j["distribution"]) for j in jobs) == [
        ("taylor", "erk"), ("taylor", "global"), ("wanda", "erk"), ("wanda", "global")]
    assert all(j["status"] == "finished" for j in jobs)
