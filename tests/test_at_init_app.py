"""End to end on digits through ``python -m prunelab``: every criterion of the at-init family and every ablation
with ``schedule=at_init``; the masks are those of step 0 at the end of training (re-derived here from each run's
saved config) and no pruned weight revives; the ablation is in the run name, the W&B tags and display name (read
back with W&B's own reader), the summary and the report's series; bad combinations are one line, exit 2, nothing
written."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from prunelab.errors import ConfigError

sys.path.insert(0, str(Path(__file__).parent))
from appkit import cli, env, metrics, run_inprocess, summary  # noqa: E402
from test_tracking import inspect_records, inspect_summary, offline_dirs, run_record  # noqa: E402

LEAN = ["schedule=at_init", "trainer.max_steps=30", "trainer.eval_every=10", "trainer.progress=none",
        "schedule.target_sparsity=0.9"]
CRITERIA = ["snip_init", "grasp", "grasp_abs", "synflow"]
ABLATIONS = ["shuffle", "invert", "reinit"]


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    """Two multiruns started together: the four criteria (logger=none), and the three ablations of SynFlow
    (20 rounds) logged to W&B offline."""
    import subprocess

    base = tmp_path_factory.mktemp("atinit")
    jobs = {
        "criteria": [f"criterion={','.join(CRITERIA)}", "logger=none"],
        "ablations": ["criterion=synflow", "criterion.rounds=20", f"criterion.ablation={','.join(ABLATIONS)}"],
    }
    procs = {}
    for name, args in jobs.items():
        out = base / name
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "prunelab", "-m", *LEAN, *args, f"hydra.sweep.dir={out}"], cwd=base,
            env=env(), stdout=(base / f"{name}.out").open("w"), stderr=subprocess.STDOUT, text=True)
    for name, proc in procs.items():
        assert proc.wait(timeout=600) == 0, (base / f"{name}.out").read_text()[-3000:]
    return {name: sorted(p for p in (base / name).iterdir() if p.is_dir()) for name in jobs}


def step0_masks(run_dir: Path) -> dict[str, torch.Tensor]:
    """The masks the run's criterion computes at step 0, re-derived in this process from the run's resolved config
    (same seed, same model initialisation, same calibration batches as the trainer draws)."""
    from prunelab import data as data_mod
    from prunelab import models
    from prunelab.pruner import Pruner
    from prunelab.training.calibration import calibration_batches
    from prunelab.training.checkpoint import seed_everything

    cfg = OmegaConf.load(run_dir / "config.yaml")
    torch.set_num_threads(1)
    seed_everything(int(cfg.seed))
    model = models.build(cfg.model)
    pruner = Pruner.from_config(model, cfg, head=models.head_name(model, cfg.model),
                                initializer=lambda: models.build(cfg.model))
    x, y = data_mod.build(cfg.dataset).train.tensors
    pruner.bind(model=model, calibration=lambda req: calibration_batches(x, y, req, cfg.trainer.batch_size, cfg.seed))
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    return pruner.masks


def check_masks_fixed(run_dir: Path) -> dict:
    s = summary(run_dir)
    assert s["status"] == "finished"
    final = torch.load(run_dir / "masks.pt", weights_only=True)
    weights = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    at_init = step0_masks(run_dir)
    for name, mask in final.items():
        assert torch.equal(mask, at_init[name]), f"{run_dir.name}: {name}'s mask moved after step 0"
        w = weights[f"{name}.weight"]
        assert torch.all(w[~mask] == 0), f"{run_dir.name}: a pruned weight of {name} revived"
        assert int((w[mask] == 0).sum()) == 0  # kept weights trained (none stuck at exactly 0)
    rows = metrics(run_dir)
    changed = [r for r in rows if "masks/changed" in r]
    assert [r["step"] for r in changed] == [0], changed  # the only mask change: at initialization
    assert changed[0]["sparsity/target"] == 0.9
    assert changed[0]["masks/changed"] == sum(int((~m).sum()) for m in final.values())
    assert s["sparsity/masked"] == pytest.approx(int(0.9 * s["pruned_params"]) / s["pruned_params"])
    return s


@pytest.mark.slow
def test_every_at_init_criterion_end_to_end(sweeps):
    runs = sweeps["criteria"]
    assert len(runs) == len(CRITERIA)
    for run_dir in runs:
        s = check_masks_fixed(run_dir)
        assert s["ablation"] == "none" and s["name"] == f"{s['criterion']}-s0.90-seed0"
    assert {summary(r)["criterion"] for r in runs} == set(CRITERIA)
    layer = {summary(r)["criterion"]: summary(r)["sparsity/layers"]["fc1"] for r in runs}
    assert len(set(layer.values())) > 1  # the criteria choose different per-layer sparsities


@pytest.mark.slow
def test_every_ablation_end_to_end_and_logged(sweeps):
    runs = sweeps["ablations"]
    assert len(runs) == len(ABLATIONS)
    for run_dir in runs:
        s = check_masks_fixed(run_dir)
        ablation = s["ablation"]
        assert s["name"] == f"synflow-{ablation}-s0.90-seed0"
        (wdir,) = offline_dirs(run_dir)
        run = run_record(inspect_records(wdir))
        assert run["display_name"] == s["name"]
        assert run["tags"][:2] == ["criterion:synflow", f"ablation:{ablation}"]
        wsum = inspect_summary(wdir)
        assert wsum["config"]["criterion"]["ablation"] == wsum["summary"]["ablation"] == ablation
    by = {summary(r)["ablation"]: r for r in runs}
    plain_like = {n: torch.load(by["shuffle"] / "masks.pt", weights_only=True)[n] for n in ("fc1", "fc2")}
    inverted = torch.load(by["invert"] / "masks.pt", weights_only=True)
    reinit = torch.load(by["reinit"] / "masks.pt", weights_only=True)
    for n in ("fc1", "fc2"):  # shuffle keeps synflow's per-layer counts (reinit has synflow's own mask)
        assert int(plain_like[n].sum()) == int(reinit[n].sum())
        assert not torch.equal(plain_like[n], reinit[n])
        assert not torch.equal(inverted[n], reinit[n])


@pytest.mark.slow
def test_ablations_are_separate_series_in_the_report(sweeps):
    from prunelab.report.data import aggregate, load_runs

    runs = load_runs([p.parent for p in sweeps["ablations"][:1]] + [p.parent for p in sweeps["criteria"][:1]])
    series = {r.series for r in runs}
    assert {"synflow [shuffle]", "synflow [invert]", "synflow [reinit]"} <= series
    assert {"snip_init", "grasp", "grasp_abs", "synflow"} <= series  # plain runs keep the criterion's name
    cells = aggregate(runs, lambda r: r.test_acc)
    assert {s for s, _ in cells} == series and all(stat.n == 1 for stat in cells.values())


RUN_FILES = ("config.yaml", "summary.json", "metrics.jsonl", "checkpoint.pt", ".hydra", "wandb")


def test_a_one_shot_ablation_with_a_gradual_schedule_is_one_line_exit_2(tmp_path):
    run_dir = tmp_path / "run"
    proc = cli(["criterion=synflow", "criterion.ablation=shuffle", "logger=none", f"hydra.run.dir={run_dir}"],
               cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("prunelab: error: criterion.ablation='shuffle': none or invert with a schedule of 11 "
                           "pruning steps"), last
    assert not any((run_dir / f).exists() for f in RUN_FILES)


@pytest.mark.parametrize("args, key", [
    (["criterion=magnitude", "schedule=at_init", "criterion.ablation=bogus"], "criterion.ablation='bogus'"),
    (["criterion=grasp", "schedule=at_init", "criterion.samples_per_class=1000"],
     "criterion.samples_per_class=1000: at most"),
    (["criterion=synflow", "schedule=at_init", "criterion.rounds=0"], "criterion.rounds=0"),
    (["criterion=snip", "schedule=at_init"], "schedule.end_step=0"),
])
def test_bad_combinations_are_one_line_and_write_nothing(tmp_path, args, key):
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError) as e:
        run_inprocess([*args, "logger=none", "trainer.max_steps=30"], run_dir)
    assert str(e.value).startswith(key) and "\n" not in str(e.value)
    assert not any((run_dir / f).exists() for f in RUN_FILES)
