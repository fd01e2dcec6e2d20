"""The committed dynamic-sparse-training comparison (conf/experiment/dst_fmnist.yaml) composes each arm as intended:
RigL, SET and static ERK-random start at the target at step 0 (schedule at_init, ERK split), gmp prunes gradually in
criteria_fmnist's window; an experiment's own schedule keys would be merged after the criterion option's and turn
the at-init arms gradual, which is what these checks would catch."""
from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from appkit import compose
from prunelab.app import validate
from prunelab.regrowth import build_updater
from prunelab.schedule import Schedule

REPO = Path(__file__).resolve().parents[1]
PRESET = OmegaConf.load(REPO / "conf" / "experiment" / "dst_fmnist.yaml")
FMNIST = OmegaConf.load(REPO / "conf" / "experiment" / "criteria_fmnist.yaml")
AT_INIT = {"start_step": 0, "end_step": 0, "pruning_frequency": 1}
# arm -> (criterion type, distribution, regrowth name, regrowth decay)
ARMS = {
    "rigl": ("random", "erk", "rigl", "cosine"),
    "set": ("random", "erk", "set", "constant"),
    "static_erk": ("random", "erk", "none", None),
    "gmp": ("magnitude", "global", "none", None),
}


def arm(name: str, target: float = 0.9):
    return compose(["+experiment=dst_fmnist", f"criterion={name}", f"schedule.target_sparsity={target}"])


def window(cfg) -> dict[str, int]:
    """The schedule's steps as the app resolves them (fractions of training where no step is set)."""
    schedule = Schedule.from_config(cfg.schedule, total_steps=int(cfg.trainer.max_steps))
    return {k: getattr(schedule, k) for k in AT_INIT}


def test_sweep_is_four_arms_three_sparsities_three_seeds_and_dense_once():
    params = PRESET.hydra.sweeper.params
    assert sorted(params.criterion.split(",")) == sorted(ARMS)
    assert sorted(float(t) for t in str(params["schedule.target_sparsity"]).split(",")) == [0.0, 0.8, 0.9, 0.95]
    assert str(params.seed).split(",") == ["0", "1", "2"]
    assert PRESET.hydra.sweeper.dense_criterion == "gmp"  # the dense job shares gmp's schedule keys


@pytest.mark.parametrize("name", list(ARMS))
def test_each_arm_gets_its_own_schedule_distribution_and_regrowth(name):
    ctype, dist, regrowth, decay = ARMS[name]
    cfg = arm(name)
    validate(cfg)  # the app accepts it
    assert cfg.criterion.criterion_type == ctype and cfg.distribution.name == dist
    assert cfg.regrowth.name == regrowth and cfg.regrowth.get("decay") == decay
    assert (cfg.model.name, list(cfg.model.hidden_sizes), cfg.dataset.name) == ("mlp", [300, 100], "fashion_mnist")
    assert cfg.trainer.max_steps == 3000 and cfg.trainer.num_threads == 1 and cfg.group == "dst_fmnist"
    assert cfg.schedule.target_sparsity == 0.9
    if name == "gmp":  # criteria_fmnist's gradual window, exp decay
        assert window(cfg) == {k: FMNIST.schedule[k] for k in AT_INIT} == {
            "start_step": 300, "end_step": 1800, "pruning_frequency": 100}
        assert cfg.schedule.sparsity_decay_type == "exp"
    else:  # pruned to the target before the first step
        assert window(cfg) == AT_INIT


@pytest.mark.parametrize("name", ["rigl", "set"])
def test_mask_updates_every_100_steps_until_three_quarters_of_training(name):
    """Evci et al. 2020's defaults for a 3,000-step run: delta_t = 100, T_end = 0.75 * 3000 = 2250, alpha = 0.3, so
    updates at 100, 200, ..., 2200 (22); RigL's fraction cosine-decays from 0.3, SET's stays 0.3."""
    cfg = arm(name)
    updater = build_updater(cfg.regrowth, int(cfg.trainer.max_steps), window(cfg)["end_step"], int(cfg.seed))
    updates = [t for t in range(3000) if updater.is_update_step(t)]
    assert updates == list(range(100, 2201, 100))
    assert updater.drop_fraction(0) == pytest.approx(0.3)
    half = updater.drop_fraction(1125)  # T_end / 2: cos(pi/2) = 0
    assert half == pytest.approx(0.15 if name == "rigl" else 0.3)
