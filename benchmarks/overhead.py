#!/usr/bin/env python
"""Training-step overhead of pruning with prunelab, as ratios over a dense step measured in the same run.

For every criterion x pattern x distribution that applies, on (a) an MLP 784-300-100-10 (batch 128) and (b) a
CIFAR ResNet-20 (He et al. 2016, option-A shortcuts; batch 64 on 3x32x32), this script times a dense training step and a
pruned one, in one process, on the same synthetic data, step by step interleaved (dense, pruned, pruned,
dense, ...), and reports:

* **ordinary step**: a step at which the schedule does not prune (mean over the window's non-pruning steps);
  the pruner's work is the criterion's per-step scoring (if any) and re-applying the masks;
* **pruning step**: a step at which ``pruner.on_step_begin(step)`` recomputes the masks (scores + selection +
  apply), i.e. the whole training step that prunes;
* **amortized step**: mean step over a 100-step schedule pruning every 10 steps (steps 0, 10, ..., 90);
* **mask update**: (pruning step - ordinary step) / dense step, what one mask recomputation costs in dense steps
  (for a model-level criterion, wanda, its calibration passes are timed within its pruning steps and reported
  apart, in dense steps, each over the paired dense step; the judged mask update is the rest).

Dynamic sparse training (``rigl``, Evci et al. 2020; ``set``, Mocanu et al. 2018) is timed the same way, as
1x1 ERK variants: random ERK masks at the target at step 0 (``Schedule(target, 0, 0)``, criterion ``random``, as
``criterion=rigl`` / ``criterion=set`` in the app), then the updater's drop-and-grow at steps 10, 20, ..., 90
(``delta_t = 10``, ``t_end = 100``, drop fraction 0.3: cosine-decayed for RigL, constant for SET; grown weights
and their momentum zeroed). Its rows read: **ordinary** = a step without an update (re-applying the masks),
**pruning** = a step that updates the masks (the whole step: drop and grow, optimizer-state reset, training
step), **amortized** = the mean over the 100 steps, **update** = what the drop-and-grow adds, in dense steps.

Variants: the wave-1 criteria (magnitude, gradient, snip, snip_momentum, random) x every pattern x {global,
uniform}; the wave-2 criteria scored in training (taylor, movement, lamp) and wanda x every pattern x every
distribution (global, uniform, erk, er, per_row) that applies (lamp: global only; per_row: not with channel);
magnitude x every pattern x {erk, er, per_row} (what a distribution's split costs, next to the same criterion under
global and uniform); rigl and set x 1x1 x erk (dynamic sparse training, below). ``--criteria`` /
``--distributions`` restrict the set.

Each figure is a ratio over the dense step timed in the same window: every pruned step is divided by the dense
step timed next to it; who runs first alternates step by step and repeat by repeat, and the two orders are
weighted equally (a trimmed geometric mean per order, see ``balanced_ratio`` and ``summarize``).

The same masking done the way a user would without prunelab (``torch.nn.utils.prune``: ``global_unstructured``
with ``L1Unstructured`` = our ``magnitude``, and with a custom ``importance_scores`` dict of |W * grad W| = our
``snip``; both 1x1 global) is timed in the same loop, and its ratios are printed beside ours.

The optimizer is SGD with momentum. The classifier head (the last Linear) is not pruned. 2:4 prunes to 0.5,
the other patterns to 0.9. The schedule is ``Schedule(target, start_step=0, end_step=90, pruning_frequency=10)``
(exp decay, as the reference's default).

Windows (which steps of that schedule are timed):

* MLP: all 100 steps (0..99); amortized = the mean of the 100 per-step ratios.
* ResNet-20 (a step takes ~0.25 s on 2 cores, so 100 steps x 111 variants does not fit a benchmark run): step
  79 untimed (the pruner's state then is that of step 79: gradient scores computed for step 80), then one
  pruning period, steps 80..89, timed: the pruning step 80 (to the schedule's target at step 80, 0.87 for 0.9)
  and 9 ordinary steps, of which step 89 scores for the next pruning step (gradient/snip). Amortized = the mean
  over that period, which equals the 100-step mean of periods 10..89 and over-estimates it for steps 0..9 (no
  masks yet) and 90..99 (no scoring any more): a conservative figure.

Run::

    python benchmarks/overhead.py                       # full run (111 variants; ~25 min on 2 idle CPU cores)
    python benchmarks/overhead.py --criteria taylor,movement,lamp,wanda   # the wave-2 criteria only
    python benchmarks/overhead.py --focus-only          # only the variants the targets judge
    python benchmarks/overhead.py --quick --json o.json # smoke run (< 30 s)
    python benchmarks/overhead.py --models mlp --focus-only --fused   # + snip_momentum with its fused update
    python benchmarks/overhead.py --models mlp --focus-only --fused-step --criteria snip_momentum,taylor

``--fused`` adds snip_momentum with ``criterion.fused=true`` (its score update as one pass compiled by
``torch.compile``; compiled before anything is timed) as the variant ``snip_momentum+fused``.

``--fused-step`` adds every criterion (1x1 global; rigl/set 1x1 erk) with ``trainer.fused_step=true`` (the pruned
layers' SGD step, masks and, for snip_momentum, scores as one compiled pass; compiled before anything is timed)
as ``<criterion>+fusedstep``. Each is timed against a dense step that takes the same fused SGD step (as a dense
run with the option does), so the ratio is the pruning's cost and not the fused SGD's gain; the row
``dense+fusedstep`` gives that gain (a dense step with the fused SGD over a plain dense step). Where that row
reads above 1 (the fused dense step slower), the judged figure is over the plain dense step instead (the product
of the two ratios): neither denominator can flatter it.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import prune as tprune

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from prunelab import Pattern, Pruner, Schedule, select_layers  # noqa: E402
from prunelab.training.fused_step import FusedStep  # noqa: E402

WAVE1 = ("magnitude", "gradient", "snip", "snip_momentum", "random")
WAVE2 = ("taylor", "movement", "lamp", "wanda")
CRITERIA = WAVE1 + WAVE2
DST = ("rigl", "set")  # mask updaters (prunelab.regrowth): random ERK masks at init, then drop-and-grow
DST_DROP = 0.3  # the drop fraction at the first update (Evci et al. 2020's alpha; Mocanu et al. 2018's zeta)
PATTERNS = ("1x1", "4x1", "2:4", "channel")
DISTRIBUTIONS = ("global", "uniform", "erk", "er", "per_row")
TORCH_METHODS = {"torch_l1": "magnitude", "torch_custom": "snip"}  # torch.nn.utils.prune way -> our criterion
START, END, FREQ, TOTAL = 0, 90, 10, 100  # the schedule: prune at 0, 10, ..., 90 over 100 steps

LIMITS = {
    "mlp_ordinary": 1.15,
    "mlp_amortized": 1.25,
    "mlp_update_dense_steps": 2.0,
    "resnet20_ordinary": 1.03,
    "mlp_ordinary_fused": 1.10,  # snip_momentum with its fused (compiled) score update
    "mlp_dst_update_step": 2.0,  # rigl/set: a step that updates the masks, in dense steps (issue 16)
}


# ------------------------------------------------------------------------------------------------ models
class MLP(nn.Module):
    """784-300-100-10 (LeNet-300-100); head ``fc3``."""

    head = "fc3"

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride = stride
        self.pad = cout - cin  # option A: parameter-free shortcut, subsample + zero-pad channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        sc = x
        if self.stride != 1 or self.pad:
            sc = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return F.relu(out + sc)


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (He et al. 2016, sec. 4.2): 3x3 conv 16, 3 stages x 3 basic blocks (16, 32, 64 channels),
    option-A shortcuts, global average pooling, head ``fc``. 0.27M parameters."""

    head = "fc"

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for b in range(3):
                blocks.append(BasicBlock(cin, cout, stride if b == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        x = self.layers(x)
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


@dataclass
class ModelSpec:
    name: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    batch: int
    window: list[int]  # timed steps of the 100-step schedule
    warmup: list[int]  # untimed steps run first (same schedule)
    window_desc: str


def model_specs(quick: bool) -> dict[str, ModelSpec]:
    return {
        "mlp": ModelSpec(
            "mlp", MLP, (784,), 128, list(range(22 if quick else TOTAL)), [],
            "steps 0..21 (quick)" if quick else "all 100 steps of the schedule (0..99)",
        ),
        "resnet20": ModelSpec(
            "resnet20", ResNet20, (3, 32, 32), 64,
            list(range(80, 83)) if quick else list(range(80, 90)),
            [79],
            "steps 80..82 (quick)" if quick else "one pruning period, steps 80..89 (after untimed step 79)",
        ),
    }


# ------------------------------------------------------------------------------------------------ steps
def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def schedule_for(pattern: str) -> Schedule:
    return Schedule(target_for(pattern), start_step=START, end_step=END, pruning_frequency=FREQ)


def target_for(pattern: str) -> float:
    return 0.5 if ":" in pattern else 0.9


def prune_count(target: float, n: int) -> int:
    """prunelab's rounding (floor of target * n, rounded to 1e-6 first)."""
    return min(n, math.floor(round(target * n, 6)))


class DenseRunner:
    """A dense step; with ``fused_step``, as a dense run with ``trainer.fused_step=true`` takes it: the prunable
    layers' SGD step (and their all-True masks) as the pruner's one compiled pass, the rest by the optimizer."""

    def __init__(self, model: nn.Module, fused_step: bool = False) -> None:
        self.model, self.opt = model, sgd(model)
        self.fused: FusedStep | None = None
        if fused_step:
            weights = [m.weight for m in select_layers(model, Pattern("1x1", "global"), head=model.head)[0].values()]
            self.fused = FusedStep(self.opt, weights)
            self.ones = [torch.ones_like(w, dtype=torch.bool) for w in weights]

    def step(self, t: int, x: torch.Tensor, y: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(x), y).backward()
        fused = self.fused is not None and self.fused.ready()
        if fused:
            self.fused.step(self.ones)
        self.opt.step()
        if fused:
            self.fused.release()

    def sparsity(self) -> float:
        return 0.0


def dst_updater(name: str) -> Any:
    """The mask updater of ``rigl`` / ``set`` on the benchmark's grid: updates at 10, 20, ..., 90."""
    from prunelab.regrowth import UPDATERS

    return UPDATERS.get(name)(delta_t=FREQ, t_end=TOTAL, drop_fraction=DST_DROP, start_step=0, seed=0)


class OursRunner:
    """The five hooks, exactly as a training loop calls them."""

    def __init__(self, model: nn.Module, criterion: str, pattern: str, distribution: str,
                 calibration: list | None = None, options: dict[str, Any] | None = None,
                 fused_step: bool = False) -> None:
        self.model, self.opt = model, sgd(model)
        dst = criterion in DST
        # rigl/set: the app's criterion=rigl / set: random masks at the target at step 0, then the updater
        self.schedule = Schedule(target_for(pattern), start_step=0, end_step=0) if dst else schedule_for(pattern)
        self.pruner = Pruner(
            model, criterion={"criterion_type": "random" if dst else criterion, **(options or {})}, pattern=pattern,
            distribution=distribution, schedule=self.schedule, head=model.head, optimizer=self.opt,
            updater=dst_updater(criterion) if dst else None,
        )
        # model-level criteria (wanda) score on the benchmark's batches, as many as they ask for; the time of their
        # own passes is recorded per step (reported apart from the mask update)
        self.pruner.bind(model=model, calibration=lambda req: (calibration or [])[: req.batches])
        if fused_step:
            self.pruner.bind(fused_step=FusedStep(self.opt, list(self.pruner.weights)))
        self.calibration_s = 0.0
        score_model = self.pruner._score_model

        def timed_score_model() -> None:
            t0 = time.perf_counter()
            score_model()
            self.calibration_s += time.perf_counter() - t0

        self.pruner._score_model = timed_score_model  # type: ignore[method-assign]
        self.pruner.on_train_begin()
        self.flips = 0  # rigl/set: mask entries flipped by the updates (checks that drop-and-grow happened)

    def step(self, t: int, x: torch.Tensor, y: torch.Tensor) -> None:
        p = self.pruner
        p.on_step_begin(t)
        if p.updater is not None and p.updater.is_update_step(t):  # not step 0's initial masks
            self.flips += sum(p.changed.values())
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(x), y).backward()
        p.on_before_optimizer_step()
        self.opt.step()
        p.on_after_optimizer_step()

    def masks(self) -> dict[str, torch.Tensor]:
        return dict(self.pruner.masks)

    def sparsity(self) -> float:
        """The fraction the masks remove (not zeros in the weights: a weight RigL or SET just grew is 0 until a
        gradient moves it, and one grown into a dead unit stays 0)."""
        return float(self.pruner.masked_fraction())


class TorchPruneRunner:
    """The same gradual 1x1 global masking written with ``torch.nn.utils.prune``, as a user would.

    ``torch_l1``: at a pruning step, ``global_unstructured(..., L1Unstructured, amount=new)`` (|W| at step begin,
    as our magnitude). ``torch_custom``: the step before a pruning step computes ``importance_scores`` = |W * grad|
    (as our snip); the pruning step passes them to ``global_unstructured``. ``amount`` is the number of weights
    newly pruned (torch prunes among the still-unpruned ones), so the total reaches our exact count.
    """

    def __init__(self, model: nn.Module, method: str) -> None:
        self.model, self.opt, self.method = model, sgd(model), method
        self.schedule = schedule_for("1x1")
        layers, _ = select_layers(model, Pattern("1x1", "global"), head=model.head)
        self.layers = layers
        self.params = [(m, "weight") for m in layers.values()]
        self.n = sum(m.weight.numel() for m in layers.values())
        self.pruned = 0
        self.scores: dict[Any, torch.Tensor] | None = None

    def step(self, t: int, x: torch.Tensor, y: torch.Tensor) -> None:
        sch = self.schedule
        if sch.is_pruning_step(t):
            k = prune_count(sch.target(t), self.n)
            kwargs: dict[str, Any] = {"pruning_method": tprune.L1Unstructured, "amount": k - self.pruned}
            if self.method == "torch_custom" and self.scores is not None:
                kwargs["importance_scores"] = self.scores
            tprune.global_unstructured(self.params, **kwargs)
            self.pruned = k
        self.opt.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(x), y).backward()
        if self.method == "torch_custom" and sch.is_pruning_step(t + 1):
            with torch.no_grad():
                self.scores = {}
                for m in self.layers.values():
                    w = getattr(m, "weight_orig", m.weight)
                    self.scores[(m, "weight")] = (w * w.grad).abs()
        self.opt.step()

    def masks(self) -> dict[str, torch.Tensor]:
        out = {}
        for name, m in self.layers.items():
            mask = getattr(m, "weight_mask", None)
            out[name] = torch.ones_like(m.weight, dtype=torch.bool) if mask is None else mask.bool()
        return out

    def sparsity(self) -> float:
        return self.pruned / self.n


# ------------------------------------------------------------------------------------------------ timing
@dataclass
class Variant:
    key: str
    kind: str  # "ours" | "torch"
    criterion: str
    pattern: str = "1x1"
    distribution: str = "global"
    focus: bool = False  # a variant some target is judged on (gets the focus repeats)
    runs: list[dict[str, Any]] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # the criterion's own config keys
    fused_step: bool = False  # trainer.fused_step: timed against a dense step that takes the same fused SGD step

    def runner(self, model: nn.Module, batches: list | None = None) -> Any:
        if self.kind == "ours":
            return OursRunner(model, self.criterion, self.pattern, self.distribution, batches, self.options,
                              self.fused_step)
        if self.kind == "dense":
            return DenseRunner(model, fused_step=True)
        return TorchPruneRunner(model, self.key)


FUSED = {"fused": "true"}


def applies(criterion: str, pattern: str, distribution: str) -> bool:
    """Whether the pruner accepts this combination (a criterion's own restriction, a distribution's pattern)."""
    from prunelab.criteria import CRITERIA as REGISTERED
    from prunelab.sparsity.distribution import build_distribution

    if criterion in DST:  # drop-and-grow works on single weights; any distribution sets the initial masks
        return pattern == "1x1"
    allowed = REGISTERED.get(criterion).distributions
    if allowed is not None and distribution not in allowed:
        return False
    return build_distribution(distribution).check_pattern(Pattern(pattern)) is None


def full_combos() -> list[tuple[str, str, str]]:
    """Every variant of a full run (see the module docstring)."""
    combos = [(c, p, d) for c in WAVE1 for p in PATTERNS for d in ("global", "uniform")]
    combos += [(c, p, d) for c in WAVE2 for p in PATTERNS for d in DISTRIBUTIONS]
    combos += [("magnitude", p, d) for p in PATTERNS for d in ("erk", "er", "per_row")]
    combos += [(c, "1x1", "erk") for c in DST]
    return [c for c in combos if applies(*c)]


def variants_for(quick: bool, model: str, focus_only: bool = False, criteria: tuple[str, ...] = CRITERIA + DST,
                 distributions: tuple[str, ...] = DISTRIBUTIONS, fused: bool = False,
                 fused_step: bool = False) -> list[Variant]:
    vs: list[Variant] = []
    if quick:  # every criterion, pattern and distribution at least once on the MLP; one variant on ResNet-20
        combos = [("magnitude", "1x1", "global")]
        if model == "mlp":
            combos += [("snip", "1x1", "global"), ("gradient", "channel", "global"),
                       ("snip_momentum", "2:4", "uniform"), ("random", "4x1", "uniform"),
                       ("taylor", "channel", "erk"), ("movement", "4x1", "er"), ("lamp", "1x1", "global"),
                       ("wanda", "2:4", "per_row"), ("wanda", "1x1", "global"), ("rigl", "1x1", "erk"),
                       ("set", "1x1", "erk")]
    elif focus_only:
        combos = [(c, "1x1", "global") for c in CRITERIA] + [(c, "1x1", "erk") for c in DST]
    else:
        combos = full_combos()
    combos = [(c, p, d) for c, p, d in combos if c in criteria and d in distributions]
    for c, p, d in combos:
        judged = "erk" if c in DST else "global"  # the distribution a target is judged on
        vs.append(Variant(f"{c}/{p}/{d}", "ours", c, p, d, focus=(p == "1x1" and d == judged)))
    if fused and "snip_momentum" in criteria and "global" in distributions:
        vs.append(Variant("snip_momentum+fused/1x1/global", "ours", "snip_momentum", focus=True, options=FUSED))
    if fused_step:
        vs.append(Variant("dense+fusedstep", "dense", "dense", focus=True))
        vs += [Variant(f"{c}+fusedstep/1x1/{d}", "ours", c, "1x1", d, focus=True, fused_step=True)
               for c in criteria for d in (("erk",) if c in DST else ("global",)) if d in distributions
               and c != "wanda"]
    methods = ["torch_l1"] if (quick and model != "mlp") else list(TORCH_METHODS)
    for method in methods:
        vs.append(Variant(method, "torch", TORCH_METHODS[method], focus=True))
    return vs


def make_batches(spec: ModelSpec, n: int = 4, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn((spec.batch, *spec.input_shape), generator=g), torch.randint(0, 10, (spec.batch,), generator=g))
        for _ in range(n)
    ]


def run_window(spec: ModelSpec, base: nn.Module, batches: list, variant: Variant, flip: int = 0) -> dict[str, Any]:
    """One repeat of one variant: untimed warm-up steps, then the window, dense and pruned steps interleaved
    (each pruned step is paired with the dense step next to it in time; who goes first alternates from step to
    step, and ``flip`` (the repeat's parity) swaps it, so every step is timed in both orders over the repeats)."""
    dense = DenseRunner(copy.deepcopy(base), fused_step=variant.fused_step)
    runner = variant.runner(copy.deepcopy(base), batches)
    nb = len(batches)
    for t in spec.warmup:
        x, y = batches[t % nb]
        dense.step(t, x, y)
        runner.step(t, x, y)
    d_times, v_times, c_times = [], [], []
    gc.collect()
    gc.disable()
    try:
        for i, t in enumerate(spec.window):
            x, y = batches[t % nb]
            pair = (dense, runner) if (i + flip) % 2 == 0 else (runner, dense)
            runner.calibration_s = 0.0
            for r in pair:
                t0 = time.perf_counter()
                r.step(t, x, y)
                dt = time.perf_counter() - t0
                (d_times if r is dense else v_times).append(dt)
            c_times.append(getattr(runner, "calibration_s", 0.0))
    finally:
        gc.enable()
    first = [(i + flip) % 2 == 1 for i in range(len(spec.window))]  # True where the pruned step ran first
    return {"dense": d_times, "pruned": v_times, "calibration": c_times, "pruned_first": first,
            "sparsity": runner.sparsity(), "mask_flips": getattr(runner, "flips", 0)}


def balanced_ratio(runs: list[dict[str, Any]], idx: list[int]) -> tuple[float, float]:
    """Pruned / dense ratio over the window steps ``idx`` of all repeats, with the order effect cancelled, and
    its standard error.

    The step that runs right after the other model's step starts with a cold cache: on the MLP the ratio of a
    pair where the pruned step runs second is ~10% above one where it runs first. So the pairs are split by
    order, each class gets a 10%-trimmed mean of its log ratios (robust to bursts of load from other
    processes), and the figure is the geometric mean of the two classes. The error combines the classes'
    standard errors (delta method).
    """
    classes: dict[bool, list[float]] = {False: [], True: []}
    for run in runs:
        for i in idx:
            classes[run["pruned_first"][i]].append(math.log(run["pruned"][i] / run["dense"][i]))
    means, variances = [], []
    for logs in classes.values():
        if not logs:
            continue
        logs.sort()
        cut = len(logs) // 10
        kept = logs[cut: len(logs) - cut]
        means.append(statistics.fmean(kept))
        variances.append(statistics.variance(kept) / len(kept) if len(kept) > 1 else float("nan"))
    value = math.exp(statistics.fmean(means))
    return value, value * math.sqrt(sum(variances)) / len(variances)


def amortized_se(runs: list[dict[str, Any]]) -> float:
    """Standard error of the amortized ratio, from how much it varies between repeats."""
    per_run = [statistics.fmean(p / d for p, d in zip(run["pruned"], run["dense"])) for run in runs]
    return statistics.stdev(per_run) / math.sqrt(len(per_run)) if len(per_run) > 1 else float("nan")


def summarize(spec: ModelSpec, runs: list[dict[str, Any]], dst: bool = False) -> dict[str, Any]:
    """Combine the repeats of one variant.

    Ordinary = the order-balanced ratio (:func:`balanced_ratio`) over the non-pruning steps of all repeats,
    pruning = the same over the pruning steps with a nonzero target, amortized = the mean over the window's steps
    of each step's order-balanced ratio (one step at a time, so that every step of the schedule counts once),
    update = pruning - ordinary (in dense steps). Milliseconds are medians of the raw step times over all
    repeats (for reading; the ratios are what is judged). ``dst`` (rigl, set): pruning = the drop-and-grow steps
    10..90 only (step 0 sets the initial masks: not an update).
    """
    sch = schedule_for("1x1")  # every schedule here prunes at the same steps
    w = spec.window
    prune_idx = [i for i, t in enumerate(w) if sch.is_pruning_step(t)]
    real_prune = [i for i in prune_idx if (w[i] > 0 if dst else sch.target(w[i]) > 0)] or prune_idx
    ord_idx = [i for i in range(len(w)) if i not in prune_idx]
    ordinary, ordinary_se = balanced_ratio(runs, ord_idx)
    pruning, _ = balanced_ratio(runs, real_prune)
    return {
        "dense_ms": statistics.median(d for run in runs for d in run["dense"]) * 1e3,
        "ordinary_ms": statistics.median(run["pruned"][i] for run in runs for i in ord_idx) * 1e3,
        "pruning_ms": statistics.median(run["pruned"][i] for run in runs for i in real_prune) * 1e3,
        "ordinary_ratio": ordinary,
        "pruning_ratio": pruning,
        "amortized_ratio": statistics.fmean(balanced_ratio(runs, [i])[0] for i in range(len(w))),
        "update_dense_steps": pruning - ordinary,
        # model-level criteria: their own passes at the pruning steps, in dense steps (each over its paired dense
        # step), included in pruning / update above
        "calibration_dense_steps": statistics.fmean(run["calibration"][i] / run["dense"][i]
                                                    for run in runs for i in real_prune),
        "ordinary_se": ordinary_se,  # noise of the ordinary ratio (standard error)
        "amortized_se": amortized_se(runs),
        "sparsity": statistics.median(run["sparsity"] for run in runs),
        "mask_flips": statistics.median(run["mask_flips"] for run in runs),  # rigl/set: entries flipped by updates
        "repeats": len(runs),
    }


def mask_agreement(spec: ModelSpec, base: nn.Module, batches: list, method: str) -> dict[str, Any]:
    """Run ours and torch.nn.utils.prune from the same weights on the same batches up to the first pruning step
    with a nonzero target; return how many mask entries agree (checks that the two do the same masking)."""
    ours = OursRunner(copy.deepcopy(base), TORCH_METHODS[method], "1x1", "global")
    theirs = TorchPruneRunner(copy.deepcopy(base), method)
    sch = ours.schedule
    steps = list(spec.warmup) + list(spec.window)
    nb = len(batches)
    for t in steps:
        x, y = batches[t % nb]
        ours.step(t, x, y)
        theirs.step(t, x, y)
        if sch.is_pruning_step(t) and sch.target(t) > 0:
            break
    a, b = ours.masks(), theirs.masks()
    same = sum(int((a[n] == b[n]).sum()) for n in a)
    total = sum(a[n].numel() for n in a)
    return {"step": t, "agree": same / total, "pruned_ours": int(sum((~a[n]).sum() for n in a)),
            "pruned_torch": int(sum((~b[n]).sum() for n in b))}


def bench_model(spec: ModelSpec, variants: list[Variant], repeats: int, focus_repeats: int) -> dict[str, Any]:
    torch.manual_seed(0)
    base = spec.build()
    batches = make_batches(spec)
    # warm-up: kernels, allocator, foreach paths (untimed)
    wspec = copy.copy(spec)
    wspec.warmup, wspec.window = [], ([8, 9, 10, 11] if spec.name == "mlp" else [10])
    for options in [{}] + [v.options for v in variants if v.options]:  # compiles a fused update once, untimed
        run_window(wspec, base, batches, Variant("warmup", "ours", "snip_momentum", "1x1", "global", options=options))
    for v in variants:  # the fused steps, with scores (in the schedule) and without (after it), compiled untimed
        if v.fused_step:
            for window in (wspec.window, [END + 2, END + 3]):
                run_window(dataclasses.replace(wspec, window=window), base, batches, dataclasses.replace(v, runs=[]))
    rounds = max(repeats, focus_repeats)
    t0 = time.perf_counter()
    for r in range(rounds):
        todo = [v for v in variants if r < (focus_repeats if v.focus else repeats)]
        shift = r % max(1, len(todo))
        for v in todo[shift:] + todo[:shift]:  # rotate the order every repeat
            v.runs.append(run_window(spec, base, batches, v, flip=r % 2))
    elapsed = time.perf_counter() - t0
    out_variants = []
    for v in variants:
        s = summarize(spec, v.runs, dst=v.criterion in DST)
        s.update({"key": v.key, "kind": v.kind, "criterion": v.criterion, "pattern": v.pattern,
                  "distribution": v.distribution, "target": target_for(v.pattern), "options": v.options})
        out_variants.append(s)
    agreement = {m: mask_agreement(spec, base, batches, m) for m in TORCH_METHODS if any(v.key == m for v in variants)}
    dense_all = statistics.median(d for v in variants for r in v.runs for d in r["dense"]) * 1e3
    hooks = [hook_costs(spec, base, batches, c, dense_all) for c in CRITERIA + DST
             if any(v.kind == "ours" and v.criterion == c and not v.options for v in variants)]
    hooks += [hook_costs(spec, base, batches, v.criterion, dense_all, v.options) for v in variants if v.options]
    return {
        "params": sum(p.numel() for p in base.parameters()),
        "batch": spec.batch,
        "input_shape": list(spec.input_shape),
        "window": spec.window_desc,
        "dense_ms": dense_all,
        "seconds": elapsed,
        "variants": out_variants,
        "mask_agreement": agreement,
        "hook_costs": hooks,
    }


def hook_costs(spec: ModelSpec, base: nn.Module, batches: list, criterion: str, dense_ms: float,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The pruner's own work per hook, timed alone (median of many calls; 1x1 global, masks active): where an
    overhead comes from, without a training step's noise around it. rigl/set (1x1 erk): ``update_masks`` is the
    updater's drop-and-grow (new masks, grown weights and momentum zeroed, masks applied), from the gradient of the
    last backward."""
    dst = criterion in DST
    distribution = "erk" if dst else "global"
    runner = OursRunner(copy.deepcopy(base), criterion, "1x1", distribution, batches, options)
    sch, p = runner.schedule, runner.pruner
    nb = len(batches)
    first = next(t for t in sch.steps if sch.target(t) > 0)
    for t in range(max(0, first - 1), first + 1):  # up to the first real pruning step: masks active, grads there
        runner.step(t, *batches[t % nb])
    crit = p.criterion
    model_level = crit.score_hook.value == "model"  # its own passes over the calibration batches
    score = p._score_model if model_level else getattr(crit, crit.score_hook.value) if crit.score_hook.per_step \
        else (lambda: None)
    n = (50 if spec.name == "mlp" else 20) if len(spec.window) >= 10 else 5  # fewer calls in a quick run

    def med(f: Callable[[], Any], reps: int) -> float:
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts) * 1e6

    if dst:  # a drop-and-grow at update step 10 (a fraction of 0.3 for SET, RigL's cosine value there)
        def update() -> None:
            p._apply_changes(p.updater.changes(p, FREQ, in_place=True), p.updater.resets_grown_state)
    else:
        def update() -> None:
            p.update_masks(sch.target_sparsity)
    us = {
        "apply_masks_us": med(p.on_after_optimizer_step, n),  # every step
        # every step for the stateful criteria; before/at a pruning step for the others; wanda: the calibration passes
        "scores_us": med(score, n if not model_level else max(5, n // 5)),
        "update_masks_us": med(update, max(5, n // 5)),  # a pruning step (rigl/set: an update step)
    }
    out: dict[str, Any] = {"criterion": criterion, "pattern": "1x1", "distribution": distribution,
                           "model_level": model_level, "options": options or {}, **us}
    out.update({k.replace("_us", "_dense_steps"): v / 1e3 / dense_ms for k, v in us.items()})
    # what an ordinary step would cost if the pruner's own work were all (no step noise): a lower bound
    per_step = us["apply_masks_us"] + (us["scores_us"] if crit.stateful else 0.0)
    out["ordinary_ratio_from_hooks"] = 1.0 + per_step / 1e3 / dense_ms
    return out


class CpuMonitor:
    """How much CPU other processes (and the hypervisor: steal) took while we ran: a noise indicator."""

    def __init__(self) -> None:
        self.start = self._snap()

    @staticmethod
    def _snap() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                vals = [int(v) for v in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        busy = vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + vals[7]  # user nice system irq softirq steal
        own = os.times()
        return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system, time.monotonic()

    def foreign_share(self) -> float | None:
        """Share of all CPUs' time used by others since start (0 = quiet machine)."""
        end = self._snap()
        if self.start is None or end is None:
            return None
        busy, own, wall = (e - s for e, s in zip(end, self.start))
        cpus = os.cpu_count() or 1
        return max(0.0, (busy - own) / (wall * cpus)) if wall > 0 else None

    @staticmethod
    def footer(total_s: float, foreign: float | None, what: str) -> str:
        """The closing line of a benchmark: how long it took and how loaded the machine was meanwhile."""
        noise = "n/a" if foreign is None else f"{foreign:.0%} of the machine's CPU time"
        loaded = foreign is not None and foreign > 0.1
        warn = f" -- a loaded machine: expect noisy {what}, rerun when it is quiet" if loaded else ""
        return f"total {total_s:.0f} s; other processes (and steal) used {noise} during the run{warn}"


# ------------------------------------------------------------------------------------------------ report
def verdict(value: float, limit: float, se: float) -> str:
    """PASS: at or under the limit. NOISE: over it by less than two standard errors of the measurement (this
    run cannot tell it from a pass). MISS: over it by more."""
    if value <= limit:
        return "PASS"
    return "NOISE" if math.isfinite(se) and value - limit < 2 * se else "MISS"


def judge(results: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(name: str, value: float, limit: float, se: float = float("nan")) -> None:
        targets.append({"name": name, "value": value, "limit": limit, "pass": bool(value <= limit), "se": se,
                        "verdict": verdict(value, limit, se)})

    for model, res in results.items():
        by_key = {v["key"]: v for v in res["variants"]}
        model_level = {h["criterion"] for h in res.get("hook_costs", []) if h["model_level"]}
        for c in CRITERIA:
            v = by_key.get(f"{c}/1x1/global")
            if v is None:
                continue
            if model == "mlp" and c in model_level:  # the calibration passes are reported apart (not judged)
                add(f"mlp {c} 1x1 global: ordinary step / dense", v["ordinary_ratio"], LIMITS["mlp_ordinary"],
                    v["ordinary_se"])
                add(f"mlp {c} 1x1 global: mask update less calibration, dense steps",
                    v["update_dense_steps"] - v["calibration_dense_steps"], LIMITS["mlp_update_dense_steps"])
            elif model == "mlp":
                add(f"mlp {c} 1x1 global: ordinary step / dense", v["ordinary_ratio"], LIMITS["mlp_ordinary"],
                    v["ordinary_se"])
                add(f"mlp {c} 1x1 global: amortized step / dense", v["amortized_ratio"], LIMITS["mlp_amortized"],
                    v["amortized_se"])
                add(f"mlp {c} 1x1 global: mask update, dense steps", v["update_dense_steps"],
                    LIMITS["mlp_update_dense_steps"])
                if c == "snip_momentum" and (f := by_key.get("snip_momentum+fused/1x1/global")) is not None:
                    add("mlp snip_momentum+fused 1x1 global: ordinary step / dense", f["ordinary_ratio"],
                        LIMITS["mlp_ordinary_fused"], f["ordinary_se"])
            elif model == "resnet20":
                add(f"resnet20 {c} 1x1 global: ordinary step / dense", v["ordinary_ratio"],
                    LIMITS["resnet20_ordinary"], v["ordinary_se"])
        for c in DST:  # issue 16: an ordinary step <= 1.15x dense, a step that updates the masks <= 2 dense steps
            v = by_key.get(f"{c}/1x1/erk")
            if v is None or model != "mlp":
                continue
            add(f"mlp {c} 1x1 erk: ordinary step / dense", v["ordinary_ratio"], LIMITS["mlp_ordinary"],
                v["ordinary_se"])
            add(f"mlp {c} 1x1 erk: update step, dense steps", v["pruning_ratio"], LIMITS["mlp_dst_update_step"])
        # trainer.fused_step, over a dense step that takes the same fused SGD step; where that dense step is slower
        # than a plain one (dense+fusedstep > 1), over the plain one (the product), so that neither flatters
        fused_dense = by_key.get("dense+fusedstep", {}).get("ordinary_ratio", 1.0)
        for v in res["variants"]:
            if v["key"].split("/")[0].endswith("+fusedstep") and v["kind"] == "ours" and model == "mlp":
                c = v["criterion"]
                add(f"mlp {v['key']}: ordinary step / dense", v["ordinary_ratio"] * max(1.0, fused_dense),
                    LIMITS["mlp_ordinary_fused" if c == "snip_momentum" else "mlp_ordinary"], v["ordinary_se"])
        for method, crit in TORCH_METHODS.items():
            t, o = by_key.get(method), by_key.get(f"{crit}/1x1/global")
            if t is None or o is None:
                continue
            for fig in ("ordinary_ratio", "pruning_ratio", "amortized_ratio"):
                key = fig.replace("ratio", "se")
                se = math.hypot(o[key], t[key]) if key in o else float("nan")
                add(f"{model} {crit} vs {method}: {fig.split('_')[0]} ratio, ours <= torch's", o[fig], t[fig], se)
    return targets


def print_tables(results: dict[str, Any], targets: list[dict[str, Any]]) -> None:
    for model, res in results.items():
        print(f"\n== {model}: {res['params']:,} parameters, batch {res['batch']}, input {res['input_shape']}; "
              f"dense step {res['dense_ms']:.2f} ms (median); window: {res['window']}; {res['seconds']:.0f} s")
        print(f"{'variant':<30} {'tgt':>4} {'dense ms':>8} {'ordinary':>16} {'pruning':>17} {'amort.':>7} "
              f"{'update':>7} {'spars.':>6} {'rep':>3}")
        for v in res["variants"]:
            print(f"{v['key']:<30} {v['target']:>4.2f} {v['dense_ms']:>8.2f} "
                  f"{v['ordinary_ms']:>8.2f} {v['ordinary_ratio']:>6.3f}x "
                  f"{v['pruning_ms']:>8.2f} {v['pruning_ratio']:>6.2f}x "
                  f"{v['amortized_ratio']:>6.3f}x {v['update_dense_steps']:>7.2f} {v['sparsity']:>6.3f} "
                  f"{v['repeats']:>3}")
        by_key = {v["key"]: v for v in res["variants"]}
        rows = [(m, c) for m, c in TORCH_METHODS.items() if m in by_key and f"{c}/1x1/global" in by_key]
        if rows:
            print(f"\n  ours vs torch.nn.utils.prune ({model}, same masks, 1x1 global; ratios over dense)")
            print(f"  {'ours':<22} {'torch.nn.utils.prune':<34} {'ordinary':>17} {'pruning':>17} {'amortized':>17}"
                  f"  masks agree")
            for m, c in rows:
                o, t = by_key[f"{c}/1x1/global"], by_key[m]
                how = "global_unstructured(L1Unstructured)" if m == "torch_l1" else "importance_scores=|W*grad|"
                ag = res["mask_agreement"].get(m, {})
                print(f"  {c + ' 1x1 global':<22} {how:<34} "
                      + " ".join(f"{o[f]:>7.3f} vs {t[f]:>6.3f}" for f in
                                 ("ordinary_ratio", "pruning_ratio", "amortized_ratio"))
                      + f"  {ag.get('agree', float('nan')):.4f} (step {ag.get('step')})")
        if res.get("hook_costs"):
            print(f"\n  pruner hooks alone ({model}, 1x1 global, rigl/set 1x1 erk, masks active; median us, and in "
                  f"dense steps; scores of a model-level criterion = its calibration passes; update_masks of "
                  f"rigl/set = one drop-and-grow)")
            print(f"  {'criterion':<19} {'apply masks':>20} {'scores':>20} {'update_masks':>20}"
                  f"  {'ordinary from hooks':>19}")
            for h in res["hook_costs"]:
                name = h["criterion"] + ("+fused" if h.get("options") else "")
                print(f"  {name:<19} " + " ".join(
                    f"{h[k + '_us']:>9.0f} ({h[k + '_dense_steps']:>6.3f})"
                    for k in ("apply_masks", "scores", "update_masks"))
                    + f"  {h['ordinary_ratio_from_hooks']:>18.3f}x")
    for model, res in results.items():
        for v in res["variants"]:
            if v.get("calibration_dense_steps"):
                print(f"\n  {model} {v['key']}: its calibration passes take {v['calibration_dense_steps']:.2f} dense "
                      f"steps per pruning step (in its pruning step and mask update above; reported apart, "
                      f"not judged)", end="")
        print()
    print("\n== targets (ratios measured in this run)")
    for t in targets:
        se = t.get("se", float("nan"))
        noise = f"  noise +-{se:.3f}" if math.isfinite(se) else ""
        print(f"  {t['verdict']:<5}  {t['name']:<62} {t['value']:>8.3f}  (limit {t['limit']:.3f}){noise}")


def finite_or_none(obj: Any) -> Any:
    """NaN/inf -> None, so the JSON is standard JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [finite_or_none(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: a subset of variants, 1 repeat, short windows")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--models", default="mlp,resnet20", help="comma-separated: mlp, resnet20")
    ap.add_argument("--criteria", default=",".join(CRITERIA + DST),
                    help="comma-separated criteria, rigl and set included (default: all)")
    ap.add_argument("--distributions", default=",".join(DISTRIBUTIONS),
                    help="comma-separated distributions (default: all that apply)")
    ap.add_argument("--focus-only", action="store_true",
                    help="only the variants a target is judged on (every criterion 1x1 global, rigl/set 1x1 erk, "
                         "torch.nn.utils.prune)")
    ap.add_argument("--mlp-repeats", type=int, default=None, help="repeats of every MLP variant (default 3)")
    ap.add_argument("--resnet-repeats", type=int, default=None, help="repeats of every ResNet-20 variant (default 1)")
    ap.add_argument("--focus-repeats", type=int, default=None,
                    help="repeats of the variants a target is judged on (1x1 global, torch.nn.utils.prune) "
                         "(default 5 for the MLP, 3 for ResNet-20)")
    ap.add_argument("--fused", action="store_true",
                    help="also time snip_momentum with criterion.fused=true (one compiled score pass)")
    ap.add_argument("--fused-step", action="store_true",
                    help="also time each criterion with trainer.fused_step=true (SGD, masks and scores as one "
                         "compiled pass), over a dense step with the same fused SGD step")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    logging.getLogger("prunelab").setLevel(logging.ERROR)  # layers a pattern skips (e.g. ResNet's 3-channel stem)
    specs = model_specs(args.quick)
    criteria = tuple(c.strip() for c in args.criteria.split(",") if c.strip())
    distributions = tuple(d.strip() for d in args.distributions.split(",") if d.strip())
    for name, given, known in (("criterion", criteria, CRITERIA + DST), ("distribution", distributions, DISTRIBUTIONS)):
        for x in given:
            if x not in known:
                ap.error(f"unknown {name} {x!r}; choose from {', '.join(known)}")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in specs:
            ap.error(f"unknown model {m!r}; choose from {', '.join(specs)}")
    reps = {
        "mlp": (args.mlp_repeats or (1 if args.quick else 3), args.focus_repeats or (1 if args.quick else 5)),
        "resnet20": (args.resnet_repeats or 1, args.focus_repeats or (1 if args.quick else 3)),
    }
    print(f"prunelab overhead benchmark: torch {torch.__version__}, torch.set_num_threads({torch.get_num_threads()}), "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, quick={args.quick}")
    print(f"schedule: prune at steps {START}, {START + FREQ}, ..., {END} of {TOTAL} (exp decay); target 0.9 "
          f"(2:4: 0.5); SGD(lr=0.01, momentum=0.9); head excluded; rigl/set: ERK masks at step 0, drop-and-grow at "
          f"{START + FREQ}, ..., {END} (drop fraction {DST_DROP})")
    t_start = time.perf_counter()
    monitor = CpuMonitor()
    results = {}
    for m in models:
        variants = variants_for(args.quick, m, args.focus_only, criteria, distributions, args.fused,
                                args.fused_step)
        r, fr = reps[m]
        print(f"... {m}: {len(variants)} variants, repeats {r} (focus {fr})", flush=True)
        results[m] = bench_model(specs[m], variants, r, fr)
    targets = judge(results)
    print_tables(results, targets)
    total = time.perf_counter() - t_start
    foreign = monitor.foreign_share()
    print("\n" + monitor.footer(total, foreign, "ratios"))
    if args.json:
        doc = {
            "benchmark": "overhead",
            "config": {
                "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                "quick": args.quick, "repeats": {m: {"all": reps[m][0], "focus": reps[m][1]} for m in models},
                "schedule": {"start_step": START, "end_step": END, "pruning_frequency": FREQ, "steps": TOTAL},
                "optimizer": "SGD(lr=0.01, momentum=0.9)", "seconds": total,
                "foreign_cpu_share": foreign,
            },
            "models": results,
            "targets": targets,
        }
        with open(args.json, "w") as f:
            json.dump(finite_or_none(doc), f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
