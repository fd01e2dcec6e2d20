#!/usr/bin/env python
"""What pruning at initialization costs, in dense training steps: SynFlow's rounds, GraSP's double backward,
SNIP at init, against one dense training step measured in the same run.

For LeNet-300-100 (prunelab's ``mlp`` with hidden sizes [300, 100] on 1x28x28, batch 128) and ResNet-20
(prunelab's ``resnet20`` on 3x32x32, batch 64), on synthetic data (10 classes), this script times:

* **dense step**: one training step (forward, backward, SGD step with momentum) at the training batch; the
  median of ``--steps`` steps after 3 warm-up steps;
* **pruning step at init** of each criterion: ``pruner.on_step_begin(0)`` with ``schedule=at_init`` at target 0.9,
  1x1 global, head dense, i.e. everything the pruner does before the first optimizer step: the criterion's own
  passes in the sandbox (SynFlow: ``criterion.rounds`` rounds, each an abs-valued float64 copy of the model, one
  all-ones sample forward and backward, and a global mask update; GraSP: forward, backward with
  ``create_graph=True`` and a second backward for H g, on its class-balanced batch of 25 samples x 10 classes;
  SNIP at init: one forward/backward of one training batch) and the mask updates;
* for GraSP also ``score_model`` alone (the double backward), and for SynFlow the time per round.

Every figure is the median over ``--repeats`` fresh models (same initialisation), divided by the dense step
median: "dense steps". A pruning step at init happens once per run, so its cost is to be read against the length
of training (e.g. 100 SynFlow rounds worth 40 dense steps are 0.4 % of a 10,000-step run).

Run::

    python benchmarks/init_cost.py                       # both models, 3 repeats, SynFlow's 100 rounds
    python benchmarks/init_cost.py --quick --json c.json # smoke run: batch 16, 1 repeat, 3 SynFlow rounds, 2 per class
    python benchmarks/init_cost.py --device cuda         # on a GPU (synchronised timings)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from prunelab import models  # noqa: E402
from prunelab.pruner import Pruner  # noqa: E402
from prunelab.schedule import Schedule  # noqa: E402

from overhead import CpuMonitor  # noqa: E402

MODELS = {
    "mlp": ({"name": "mlp", "input_shape": [1, 28, 28], "num_classes": 10, "hidden_sizes": [300, 100],
             "head": "head"}, 128),
    "resnet20": ({"name": "resnet20", "input_shape": [3, 32, 32], "num_classes": 10, "depth": 20, "head": "fc"}, 64),
}
TARGET = 0.9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(f: Callable[[], Any], device: torch.device) -> float:
    """Seconds ``f()`` takes (synchronised on a GPU)."""
    sync(device)
    t = time.perf_counter()
    f()
    sync(device)
    return time.perf_counter() - t


def data(shape: list[int], n: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g).to(device), (torch.arange(n) % 10).to(device)


def dense_step_s(build: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor, steps: int,
                 device: torch.device) -> float:
    model = build().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    return statistics.median(timed(step, device) for _ in range(steps))


def criteria(quick: bool) -> dict[str, dict[str, Any]]:
    return {
        "magnitude": {"criterion_type": "magnitude"},
        "snip_init": {"criterion_type": "snip_init"},
        "grasp": {"criterion_type": "grasp", "samples_per_class": 2 if quick else 25},
        "synflow": {"criterion_type": "synflow", "rounds": 3 if quick else 100},
    }


def calibration(shape: list[int], batch: int, device: torch.device) -> Callable[[Any], list]:
    pool = data(shape, 400, device, seed=1)

    def source(req: Any) -> list:
        if req.per_class:  # class-balanced: labels are arange % 10, so the first per_class * 10 are balanced
            n = req.per_class * 10
            return [(pool[0][:n], pool[1][:n])]
        bs = req.batch_size or batch
        return [(pool[0][i * bs:(i + 1) * bs], pool[1][i * bs:(i + 1) * bs]) for i in range(req.batches)]

    return source


def bench_criterion(build: Callable[[], nn.Module], head: str, config: dict[str, Any], calib: Callable, repeats: int,
                    device: torch.device) -> dict[str, float]:
    step_s, score_s = [], []
    for _ in range(repeats):
        model = build().to(device)
        pruner = Pruner(model, config, {"type": "1x1", "max_sparsity_ratio_per_op": 1.0}, Schedule(TARGET, 0, 0),
                        head=head, calibration=calib)
        pruner.on_train_begin()
        step_s.append(timed(lambda: pruner.on_step_begin(0), device))
        if config["criterion_type"] == "grasp":
            fresh = build().to(device)
            crit = Pruner(fresh, config, "1x1", Schedule(TARGET, 0, 0), head=head).criterion
            batches = calib(crit.calibration)
            score_s.append(timed(lambda: crit.score_model(fresh, batches), device))
    out = {"pruning_step_s": statistics.median(step_s), "repeats": repeats}
    if score_s:
        out["score_model_s"] = statistics.median(score_s)
    if config["criterion_type"] == "synflow":
        out["rounds"] = config["rounds"]
        out["per_round_s"] = out["pruning_step_s"] / config["rounds"]
    return out


def bench_model(name: str, quick: bool, repeats: int, steps: int, device: torch.device) -> dict[str, Any]:
    cfg, batch = MODELS[name]
    batch = 16 if quick else batch

    def build() -> nn.Module:
        torch.manual_seed(0)
        return models.build(cfg)

    x, y = data(cfg["input_shape"], batch, device)
    dense = dense_step_s(build, x, y, steps, device)
    calib = calibration(cfg["input_shape"], batch, device)
    out: dict[str, Any] = {"batch": batch, "params": sum(p.numel() for p in build().parameters()),
                           "dense_step_s": dense, "criteria": {}}
    for crit, config in criteria(quick).items():
        res = bench_criterion(build, cfg["head"], config, calib, repeats, device)
        res.update({f"{k[:-2]}_dense_steps": v / dense for k, v in list(res.items()) if k.endswith("_s")})
        out["criteria"][crit] = res
        print(f"  {name} {crit}: {res['pruning_step_s'] * 1e3:.1f} ms = {res['pruning_step_dense_steps']:.2f} dense "
              "steps", flush=True)
    return out


def print_table(results: dict[str, Any]) -> None:
    print(f"\n{'model':<9} {'criterion':<10} {'pruning step at init':>22} {'dense steps':>12}  detail")
    for name, res in results.items():
        print(f"{name:<9} {'(dense)':<10} {res['dense_step_s'] * 1e3:>19.1f} ms {1.0:>12.2f}  batch {res['batch']}")
        for crit, r in res["criteria"].items():
            detail = ""
            if "per_round_s" in r:
                detail = f"{r['rounds']} rounds, {r['per_round_dense_steps']:.2f} dense steps per round"
            if "score_model_s" in r:
                detail = f"double backward alone {r['score_model_dense_steps']:.2f} dense steps"
            print(f"{'':<9} {crit:<10} {r['pruning_step_s'] * 1e3:>19.1f} ms {r['pruning_step_dense_steps']:>12.2f}  "
                  f"{detail}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: batch 16, 1 repeat, 2 dense steps, 3 SynFlow rounds, 2 samples per class")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--models", default="mlp,resnet20", help="comma-separated: mlp, resnet20")
    ap.add_argument("--repeats", type=int, default=None, help="fresh models per criterion (default 3; quick 1)")
    ap.add_argument("--steps", type=int, default=None, help="timed dense steps (default 20; quick 2)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    args = ap.parse_args(argv)
    names = [m for m in args.models.split(",") if m]
    for m in names:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}; choose from {', '.join(MODELS)}")
    torch.set_num_threads(args.threads)
    logging.getLogger("prunelab").setLevel(logging.ERROR)  # ResNet's 3-channel stem is skipped by some patterns
    device = torch.device(args.device)
    repeats, steps = args.repeats or (1 if args.quick else 3), args.steps or (2 if args.quick else 20)
    print(f"prunelab init-cost benchmark: torch {torch.__version__}, torch.set_num_threads({torch.get_num_threads()}), "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, device {device}, quick={args.quick}")
    t0, monitor = time.perf_counter(), CpuMonitor()
    results = {m: bench_model(m, args.quick, repeats, steps, device) for m in names}
    print_table(results)
    total, foreign = time.perf_counter() - t0, monitor.foreign_share()
    print("\n" + CpuMonitor.footer(total, foreign, "figures"))
    if args.json:
        doc = {"benchmark": "init_cost",
               "config": {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                          "device": str(device), "quick": args.quick, "repeats": repeats, "dense_steps": steps,
                          "target": TARGET, "seconds": total, "foreign_cpu_share": foreign},
               "models": results}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
