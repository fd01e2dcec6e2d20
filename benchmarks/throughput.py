#!/usr/bin/env python
"""Training throughput (samples per second) of prunelab's Trainer: the in-memory data path against the streaming
one, and, where a GPU is, the speed levers (AMP, torch.compile) on dense and pruned models.

CPU rows (always): the trainer's real loop (``Trainer.fit``) on synthetic uint8 images held the two ways the data
builders hold them:

* **in memory**: every split normalised once into float32 tensors (``materialise``), batches are slices;
* **streaming**: a ``DataLoader`` with ``--workers`` worker processes reads each sample from the uint8 array
  (``ArrayImages``, what CIFAR's reader gives), normalises it, and the batch is collated in the main process.

Both get the same batches (the CIFAR-style crop + flip is batch-level, applied on either path). Models: the MLP
784-300-100-10 (LeNet-300-100) on MNIST-shaped data (1x28x28, batch 128) and ResNet-20 (He et al. 2016) on
CIFAR-shaped data (3x32x32, batch 64, crop + flip), dense (``--quick``: ResNet-20 batch 8, 6 steps). Each row trains ``--steps`` steps; the first
``--warmup`` and the last (which evaluates) are not timed; rows alternate in-memory / streaming for
``--repeats`` rounds and the median counts. Target: streaming ResNet-20 with 2 workers >= 0.8x in-memory.

GPU rows (``--gpu auto``: when CUDA is available; ``--gpu on`` refuses without it): ResNet-20 on CIFAR-shaped
data (batch 128) and ResNet-50 (torchvision) on ImageNet-shaped data (3x224x224, 1000 classes, batch 64), in
memory on the device, dense and pruned (snip_momentum, 1x1 global 0.9, masks set at step 1, then ordinary
steps), with ``trainer.amp`` none / bf16 and ``trainer.compile`` off / on (compile time is excluded: it falls
in the warm-up steps), and with ``trainer.fused_step`` (amp none, compile off).

Run::

    python benchmarks/throughput.py                  # CPU rows (~3 min on 2 idle cores); GPU rows if CUDA
    python benchmarks/throughput.py --quick --json t.json   # smoke run (< 1 min)
    python benchmarks/throughput.py --gpu on         # GPU rows required (exit 2 without CUDA)
"""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from prunelab import models  # noqa: E402
from prunelab.data import ArrayImages, DataSplits, Pipeline, RandomCropFlip, SampleDataset  # noqa: E402
from prunelab.data.samples import materialise  # noqa: E402
from prunelab.pruner import Pruner  # noqa: E402
from prunelab.schedule import Schedule  # noqa: E402
from prunelab.training.callbacks import Callback, PruningCallback  # noqa: E402
from prunelab.training.trainer import Trainer, TrainerConfig  # noqa: E402

TARGET_STREAM_RATIO = 0.8  # streaming ResNet-20 (2 workers) / in-memory samples per second, CPU


@dataclass
class Setup:
    name: str
    model: dict[str, Any]
    shape: tuple[int, int, int]
    classes: int
    batch: int
    n_train: int
    augment: bool
    n_eval: int = 256  # val and test samples each (evaluated once, at the last, untimed step)


def cpu_setups(quick: bool) -> list[Setup]:
    return [
        Setup("mlp", {"name": "mlp", "hidden_sizes": [300, 100]}, (1, 28, 28), 10, 128, 2048 if quick else 8192, False,
              128 if quick else 256),
        Setup("resnet20", {"name": "resnet20", "depth": 20}, (3, 32, 32), 10, 8 if quick else 64,
              256 if quick else 4096, True, 16 if quick else 256),
    ]


def gpu_setups(quick: bool) -> list[Setup]:
    out = [Setup("resnet20", {"name": "resnet20", "depth": 20}, (3, 32, 32), 10, 128, 8192, True)]
    if not quick:
        out.append(Setup("resnet50", {"name": "torchvision", "arch": "resnet50"}, (3, 224, 224), 1000, 64, 1024,
                         False))
    return out


def synthetic_splits(setup: Setup, in_memory: bool, seed: int = 0) -> DataSplits:
    """uint8 images (random pixels, random labels) as the CIFAR builder holds them, in memory or to stream."""
    g = torch.Generator().manual_seed(seed)
    n_eval = max(setup.batch, setup.n_eval)
    images = torch.randint(0, 256, (setup.n_train + 2 * n_eval, *setup.shape), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, setup.classes, (len(images),), generator=g)
    base = ArrayImages(images, labels)
    mean, std = (0.5,) * setup.shape[0], (0.25,) * setup.shape[0]
    pipe = Pipeline([], mean, std)
    idx = torch.arange(len(images))
    splits = [SampleDataset(base, pipe, i) for i in (idx[:setup.n_train], idx[setup.n_train:setup.n_train + n_eval],
                                                     idx[setup.n_train + n_eval:])]
    if in_memory:
        splits = [materialise(s, setup.shape) for s in splits]
    crop = RandomCropFlip(4, fill=[-m / s for m, s in zip(mean, std)]) if setup.augment else None
    return DataSplits(*splits, input_shape=setup.shape, num_classes=setup.classes, name="synthetic",
                      train_transform=crop, mean=mean, std=std, in_memory=in_memory)


class Clock(Callback):
    """Wall time from the beginning of step ``first`` to the beginning of step ``last`` (synchronised on CUDA)."""

    def __init__(self, first: int, last: int, device: str) -> None:
        self.first, self.last, self.cuda = first, last, device.startswith("cuda")
        self.t0 = self.t1 = float("nan")

    def on_step_begin(self, loop: Any, step: int, metrics: dict[str, Any]) -> None:
        if step in (self.first, self.last):
            if self.cuda:
                torch.cuda.synchronize()
            if step == self.first:
                self.t0 = time.perf_counter()
            else:
                self.t1 = time.perf_counter()


@dataclass
class Row:
    model: str
    path: str  # memory | stream
    device: str
    batch: int
    workers: int = 0
    amp: str = "none"
    compile: bool = False
    pruned: bool = False
    fused_step: bool = False
    samples_per_s: list[float] = field(default_factory=list)

    @property
    def key(self) -> str:
        return (f"{self.model} {self.path}{f' ({self.workers} workers)' if self.path == 'stream' else ''} "
                f"{'pruned' if self.pruned else 'dense'} amp={self.amp} compile={self.compile}"
                + (" fused_step" if self.fused_step else ""))


def run_row(setup: Setup, row: Row, steps: int, warmup: int, tmp: str) -> float:
    torch.manual_seed(0)
    mcfg = {**setup.model, "input_shape": list(setup.shape), "num_classes": setup.classes}
    net = models.build(mcfg)
    callbacks: list[Callback] = []
    if row.pruned or row.fused_step:  # masks set at step 1 (snip_momentum has scores by then), then ordinary steps;
        # a dense row with the fused step has a pruner that prunes nothing, as the app's dense runs do
        pruner = Pruner(net, "snip_momentum" if row.pruned else "magnitude", "1x1",
                        Schedule(0.9 if row.pruned else 0.0, start_step=1, end_step=1),
                        head=models.head_name(net, mcfg))
        callbacks.append(PruningCallback(pruner, fused_step=row.fused_step))
    clock = Clock(warmup, steps - 1, row.device)
    cfg = TrainerConfig(max_steps=steps, batch_size=row.batch, eval_batch_size=256, eval_every=0, log_every=steps,
                        progress="none", device=row.device, workers=row.workers, amp=row.amp, compile=row.compile,
                        channels_last=row.device.startswith("cuda"))  # NHWC convolutions on tensor cores
    trainer = Trainer(cfg, functools.partial(torch.optim.SGD, lr=0.01, momentum=0.9), seed=0, run_dir=tmp)
    trainer.fit(net, synthetic_splits(setup, row.path == "memory"), [*callbacks, clock], end_step=1)
    return (steps - 1 - warmup) * row.batch / (clock.t1 - clock.t0)


def cpu_rows(args: argparse.Namespace, tmp: str) -> tuple[list[Row], list[dict[str, Any]]]:
    rows, targets = [], []
    for setup in cpu_setups(args.quick):
        pair = [Row(setup.name, "memory", "cpu", setup.batch), Row(setup.name, "stream", "cpu", setup.batch,
                                                                   workers=args.workers)]
        for r in range(args.repeats):
            for row in (pair if r % 2 == 0 else pair[::-1]):  # alternate who runs first
                row.samples_per_s.append(run_row(setup, row, args.steps, args.warmup, tmp))
                print(f"  {row.key}: {row.samples_per_s[-1]:.0f} samples/s", flush=True)
        ratio = statistics.median(pair[1].samples_per_s) / statistics.median(pair[0].samples_per_s)
        rows += pair
        if setup.name == "resnet20":
            targets.append({"name": f"resnet20 cpu: streaming ({args.workers} workers) / in-memory samples/s",
                            "value": ratio, "limit": TARGET_STREAM_RATIO, "direction": ">=",
                            "pass": bool(ratio >= TARGET_STREAM_RATIO)})
        else:
            targets.append({"name": f"{setup.name} cpu: streaming ({args.workers} workers) / in-memory samples/s",
                            "value": ratio, "limit": 0.0, "direction": "report", "pass": True})
    return rows, targets


def gpu_rows(args: argparse.Namespace, tmp: str) -> list[Row]:
    rows = []
    for setup in gpu_setups(args.quick):
        for pruned in (False, True):
            for amp in ("none", "bf16"):
                for comp in ((False,) if args.quick else (False, True)):
                    row = Row(setup.name, "memory", "cuda", setup.batch, amp=amp, compile=comp, pruned=pruned)
                    warm = args.warmup + (10 if comp else 0)  # compiling happens in the first steps
                    row.samples_per_s.append(run_row(setup, row, args.gpu_steps + warm, warm, tmp))
                    print(f"  {row.key}: {row.samples_per_s[-1]:.0f} samples/s", flush=True)
                    rows.append(row)
            row = Row(setup.name, "memory", "cuda", setup.batch, pruned=pruned, fused_step=True)
            warm = args.warmup + 5  # the fused step compiles at the second step
            row.samples_per_s.append(run_row(setup, row, args.gpu_steps + warm, warm, tmp))
            print(f"  {row.key}: {row.samples_per_s[-1]:.0f} samples/s", flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: small data, few steps, one repeat")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads of the main process (default 2)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the streaming rows (default 2)")
    ap.add_argument("--steps", type=int, default=None, help="steps per CPU row (default 40; quick 6)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 5; quick 2)")
    ap.add_argument("--repeats", type=int, default=None, help="rounds of the CPU rows (default 3; quick 1)")
    ap.add_argument("--gpu", choices=("auto", "on", "off"), default="auto",
                    help="GPU rows: auto (when CUDA is available), on (required), off")
    ap.add_argument("--gpu-steps", type=int, default=50, help="timed steps per GPU row (default 50)")
    args = ap.parse_args(argv)
    args.steps = args.steps or (6 if args.quick else 40)
    args.warmup = args.warmup if args.warmup is not None else (2 if args.quick else 5)
    args.repeats = args.repeats or (1 if args.quick else 3)
    cuda = torch.cuda.is_available()
    if args.gpu == "on" and not cuda:
        print("throughput: error: --gpu on needs a CUDA device (torch.cuda.is_available() is False here)",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    logging.getLogger("prunelab").setLevel(logging.ERROR)
    print(f"prunelab throughput benchmark: torch {torch.__version__}, torch.set_num_threads({args.threads}), "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, quick={args.quick}", flush=True)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows, targets = cpu_rows(args, tmp)
        gpu: dict[str, Any]
        if cuda and args.gpu != "off":
            measured = gpu_rows(args, tmp)
            rows += measured
            gpu = {"device": torch.cuda.get_device_name(), "rows": [r.key for r in measured]}
        else:
            gpu = {"skipped": "no CUDA device here" if not cuda else "--gpu off"}
            print(f"GPU rows: skipped ({gpu['skipped']})")
    print("\n== samples per second (median over repeats)")
    for row in rows:
        print(f"  {row.key:<62} {statistics.median(row.samples_per_s):>9.0f}")
    print("\n== targets")
    for t in targets:
        verdict = "INFO" if t["direction"] == "report" else ("PASS" if t["pass"] else "MISS")
        limit = "" if t["direction"] == "report" else f"  (limit >= {t['limit']:.2f})"
        print(f"  {verdict:<5} {t['name']:<62} {t['value']:.3f}{limit}")
    total = time.perf_counter() - t_start
    print(f"\ntotal {total:.0f} s")
    if args.json:
        doc = {
            "benchmark": "throughput",
            "config": {"torch": torch.__version__, "threads": args.threads, "cpus": os.cpu_count(),
                       "quick": args.quick, "workers": args.workers, "steps": args.steps, "warmup": args.warmup,
                       "repeats": args.repeats, "seconds": total},
            "rows": [{"key": r.key, "model": r.model, "path": r.path, "device": r.device, "batch": r.batch,
                      "workers": r.workers, "amp": r.amp, "compile": r.compile, "pruned": r.pruned,
                      "fused_step": r.fused_step,
                      "samples_per_s": statistics.median(r.samples_per_s), "repeats": r.samples_per_s} for r in rows],
            "targets": targets,
            "gpu": gpu,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
