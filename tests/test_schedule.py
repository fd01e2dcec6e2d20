"""Schedule: pruning steps and every decay type's targets against DESIGN.md's formulas."""
from __future__ import annotations

import math

import pytest
from omegaconf import OmegaConf

from prunelab.errors import ConfigError
from prunelab.schedule import Schedule

DECAY_TYPES = ["exp", "cos", "linear", "cube", "agp"]


def formula(kind: str, s0: float, s: float, i: int, n: int) -> float:
    """DESIGN.md's formulas, written out independently of prunelab."""
    x = i / n
    if kind == "exp":
        return 1 - (1 - s0) * ((1 - s) / (1 - s0)) ** x
    if kind == "cos":
        return s0 + (s - s0) * (1 - math.cos(x * math.pi / 2))
    if kind == "linear":
        return s0 + (s - s0) * x
    if kind == "cube":
        return s0 + (s - s0) * x**3
    if kind == "agp":
        return s + (s0 - s) * (1 - x) ** 3
    raise AssertionError(kind)


# --- hand-computed plans ---
def test_linear_hand_values_frequency_not_dividing():
    # steps 2, 5, 8 (11 > 10); end - start = 8 is not a multiple of 3; n = 2; last step 8 reaches s
    sch = Schedule(target_sparsity=0.9, start_step=2, end_step=10, pruning_frequency=3,
                   sparsity_decay_type="linear", initial_sparsity=0.1)
    assert sch.steps == [2, 5, 8]
    plan = sch.plan()
    assert [p[0] for p in plan] == [2, 5, 8]
    assert [p[1] for p in plan] == pytest.approx([0.1, 0.5, 0.9], abs=1e-12)


def test_exp_hand_values():
    # 1 - 0.25 ** (i / 2): 0, 0.5, 0.75
    sch = Schedule(target_sparsity=0.75, start_step=0, end_step=4, pruning_frequency=2, sparsity_decay_type="exp")
    assert sch.plan() == [(0, pytest.approx(0.0, abs=1e-12)), (2, pytest.approx(0.5)), (4, pytest.approx(0.75))]


def test_exp_hand_values_with_s0():
    # s0 = 0.5, s = 0.875: 1 - 0.5 * 0.25 ** (i / 2): 0.5, 0.75, 0.875
    sch = Schedule(target_sparsity=0.875, start_step=10, end_step=20, pruning_frequency=5,
                   sparsity_decay_type="exp", initial_sparsity=0.5)
    assert [v for _, v in sch.plan()] == pytest.approx([0.5, 0.75, 0.875], abs=1e-12)


def test_cube_hand_values():
    # (i / 4) ** 3 = 0, 1/64, 1/8, 27/64, 1 times 0.64
    sch = Schedule(target_sparsity=0.64, start_step=1, end_step=5, sparsity_decay_type="cube")
    assert sch.plan() == [(1, 0.0), (2, pytest.approx(0.01)), (3, pytest.approx(0.08)),
                          (4, pytest.approx(0.27)), (5, pytest.approx(0.64))]


def test_agp_hand_values():
    # 0.64 * (1 - (1 - i / 4) ** 3): 0, 0.37, 0.56, 0.63, 0.64 (fast first)
    sch = Schedule(target_sparsity=0.64, start_step=0, end_step=8, pruning_frequency=2, sparsity_decay_type="agp")
    assert [v for _, v in sch.plan()] == pytest.approx([0.0, 0.37, 0.56, 0.63, 0.64], abs=1e-12)


def test_cos_hand_values():
    # 0.8 * (1 - cos(i / 2 * pi / 2)): 0, 0.8 * (1 - sqrt(2) / 2) = 0.234314575..., 0.8
    sch = Schedule(target_sparsity=0.8, start_step=0, end_step=2, sparsity_decay_type="cos")
    assert [v for _, v in sch.plan()] == pytest.approx([0.0, 0.2343145750507619, 0.8], abs=1e-12)


# --- every decay type at every pruning step ---
@pytest.mark.parametrize("kind", DECAY_TYPES)
@pytest.mark.parametrize(
    "s0, s, start, end, freq",
    [
        (0.0, 0.9, 0, 100, 10),  # 11 steps
        (0.3, 0.8, 5, 47, 4),  # (end - start) = 42, not a multiple of 4: steps 5, 9, ..., 45
        (0.2, 0.5, 3, 4, 1),  # two steps
        (0.5, 0.5, 0, 6, 3),  # s0 == s
    ],
)
def test_targets_follow_formula(kind, s0, s, start, end, freq):
    sch = Schedule(target_sparsity=s, start_step=start, end_step=end, pruning_frequency=freq,
                   sparsity_decay_type=kind, initial_sparsity=s0)
    expected_steps = []
    k = start
    while k <= end:
        expected_steps.append(k)
        k += freq
    assert sch.steps == expected_steps
    n = len(expected_steps) - 1
    plan = sch.plan()
    assert [p[0] for p in plan] == expected_steps
    for i, (step, target) in enumerate(plan):
        want = formula(kind, s0, s, i, n)
        assert target == pytest.approx(want, abs=1e-12), (kind, step)
        assert sch.target(step) == target
    # first targets s0, last reaches s, and the targets never decrease
    assert plan[0][1] == pytest.approx(s0, abs=1e-12)
    assert plan[-1][1] == pytest.approx(s, abs=1e-12)
    assert all(a[1] <= b[1] + 1e-12 for a, b in zip(plan, plan[1:]))


def test_is_pruning_step_and_off_steps():
    sch = Schedule(target_sparsity=0.5, start_step=5, end_step=47, pruning_frequency=4, sparsity_decay_type="linear")
    pruning = {s for s in range(0, 60) if sch.is_pruning_step(s)}
    assert pruning == set(range(5, 46, 4))
    assert 47 not in pruning and 49 not in pruning
    with pytest.raises(ValueError):
        sch.target(6)
    with pytest.raises(ValueError):
        sch.target(49)


def test_sparsity_at_holds_last_target():
    sch = Schedule(target_sparsity=0.9, start_step=2, end_step=10, pruning_frequency=3,
                   sparsity_decay_type="linear", initial_sparsity=0.1)
    assert sch.sparsity_at(0) == 0.0
    assert sch.sparsity_at(1) == 0.0
    assert sch.sparsity_at(2) == pytest.approx(0.1)
    assert sch.sparsity_at(4) == pytest.approx(0.1)
    assert sch.sparsity_at(5) == pytest.approx(0.5)
    assert sch.sparsity_at(9) == pytest.approx(0.9)
    assert sch.sparsity_at(1000) == pytest.approx(0.9)


# --- one-shot and lone steps ---
@pytest.mark.parametrize("kind", DECAY_TYPES)
def test_one_shot(kind):
    sch = Schedule(target_sparsity=0.7, start_step=3, end_step=3, sparsity_decay_type=kind, initial_sparsity=0.2)
    assert sch.one_shot
    assert sch.steps == [3]
    assert sch.plan() == [(3, 0.7)]
    assert [s for s in range(10) if sch.is_pruning_step(s)] == [3]


def test_lone_step_when_frequency_exceeds_span():
    sch = Schedule(target_sparsity=0.6, start_step=2, end_step=5, pruning_frequency=10)
    assert not sch.one_shot
    assert sch.plan() == [(2, 0.6)]


def test_defaults():
    sch = Schedule()
    assert (sch.target_sparsity, sch.start_step, sch.end_step, sch.pruning_frequency,
            sch.sparsity_decay_type, sch.initial_sparsity) == (0.9, 0, 0, 1, "exp", 0.0)
    assert sch.plan() == [(0, 0.9)]


def test_from_config_dict_and_omegaconf():
    d = {"target_sparsity": 0.5, "start_step": 1, "end_step": 3, "sparsity_decay_type": "linear", "other": 1}
    for cfg in (d, OmegaConf.create(d)):
        sch = Schedule.from_config(cfg)
        assert sch.plan() == [(1, 0.0), (2, pytest.approx(0.25)), (3, 0.5)]


# --- config errors: one line naming key, value and what is allowed ---
@pytest.mark.parametrize(
    "kwargs, key, value",
    [
        ({"target_sparsity": 1.0}, "schedule.target_sparsity", "1.0"),
        ({"target_sparsity": -0.1}, "schedule.target_sparsity", "-0.1"),
        ({"target_sparsity": 1.5}, "schedule.target_sparsity", "1.5"),
        ({"start_step": 5, "end_step": 3}, "schedule.start_step", "5"),
        ({"end_step": 4, "pruning_frequency": 0}, "schedule.pruning_frequency", "0"),
        ({"end_step": 4, "pruning_frequency": -2}, "schedule.pruning_frequency", "-2"),
        ({"target_sparsity": 0.5, "initial_sparsity": 0.6}, "schedule.initial_sparsity", "0.6"),
        ({"start_step": -1}, "schedule.start_step", "-1"),
        ({"sparsity_decay_type": "quadratic"}, "schedule.sparsity_decay_type", "'quadratic'"),
    ],
)
def test_config_errors(kwargs, key, value):
    with pytest.raises(ConfigError) as e:
        Schedule(**kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{key}={value}: ")
    assert len(msg) > len(f"{key}={value}: ") + 3  # says what is allowed
    assert e.value.key == key


def test_error_messages_say_what_is_allowed():
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        Schedule(target_sparsity=1.0)
    with pytest.raises(ConfigError, match="end_step"):
        Schedule(start_step=5, end_step=3)
    with pytest.raises(ConfigError, match=">= 1"):
        Schedule(end_step=3, pruning_frequency=0)
    with pytest.raises(ConfigError, match="exp, cos, linear, cube, agp"):
        Schedule(sparsity_decay_type="quadratic")


def test_fractions_of_training_become_steps_and_steps_win():
    # floor(fraction * total), the product rounded to 1e-6 first: 0.29 * 100 is 29 (not 28.999...)
    sch = Schedule.from_config({"start": 0.1, "end": 0.6, "pruning_frequency": 50}, total_steps=1000)
    assert (sch.start_step, sch.end_step) == (100, 600)
    assert Schedule.from_config({"start": 0.29, "end": 0.5}, total_steps=100).start_step == 29
    assert Schedule.from_config({"start": 0.1, "end": 0.6}, total_steps=37).end_step == 22  # floor(22.2)
    # an explicit step wins over the fraction of the same bound, not over the other one
    sch = Schedule.from_config({"start": 0.1, "end": 0.6, "start_step": 7}, total_steps=1000)
    assert (sch.start_step, sch.end_step) == (7, 600)
    # the default iterative schedule stays valid whatever the training length
    iterative = {"start": 0.1, "end": 0.6, "start_step": None, "end_step": None, "pruning_frequency": 50}
    for total in (20, 100, 1000, 5000):
        sch = Schedule.from_config(iterative, total_steps=total)
        assert 0 <= sch.start_step <= sch.end_step < total
    with pytest.raises(ConfigError, match=r"^schedule.end=1.5: a fraction of training in \[0, 1\)$"):
        Schedule.from_config({"end": 1.5}, total_steps=100)
    with pytest.raises(ConfigError, match=r"^schedule.end=0.5: a step \(schedule.end_step=N\)"):
        Schedule.from_config({"end": 0.5})  # no training length to take a fraction of
