"""What logging score histograms costs at a pruning step, against the mask update of the same step.

At a pruning step the pruner recomputes the masks (``Pruner.update_masks``) and the tracker turns the same
scores into fixed-bin histograms (``prunelab.tracking.histograms``: one per layer plus ``all``, log10 scale,
computed on the tensors' device). The target: histograms cost no more than the mask update.

    python benchmarks/histogram_cost.py [--quick] [--json PATH] [--threads N] [--repeats R]

Both are timed in one process on the same scores, interleaved, and reported as medians and as a ratio.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prunelab import Pruner, Schedule  # noqa: E402
from prunelab.tracking import histograms  # noqa: E402

# realistic layer shapes: the MLP 784-300-100, ResNet-20's convolutions, and a 5M-parameter stack of Linear layers
SHAPES = {
    "mlp_784_300_100": [(300, 784), (100, 300)],
    "resnet20_convs": [(16, 3, 3, 3)] + [(16, 16, 3, 3)] * 6 + [(32, 16, 3, 3)] + [(32, 32, 3, 3)] * 5
    + [(64, 32, 3, 3)] + [(64, 64, 3, 3)] * 5,
    "linear_5M": [(1024, 1024)] * 4 + [(1024, 256)] * 4,
}


def layers(shapes: list[tuple[int, ...]]) -> dict[str, nn.Module]:
    """Modules with a weight of each shape, filled with seeded values (and a fake gradient for snip)."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for i, shape in enumerate(shapes):
        mod = nn.Linear(1, 1) if len(shape) == 2 else nn.Conv2d(1, 1, 1)
        mod.weight = nn.Parameter(torch.randn(shape, generator=gen))
        mod.weight.grad = torch.randn(shape, generator=gen)
        out[f"layer{i}"] = mod
    return out


def measure(shapes: list[tuple[int, ...]], repeats: int, bins: int) -> dict[str, float]:
    mods = layers(shapes)
    pruner = Pruner(mods, criterion="snip", pattern="1x1", schedule=Schedule(0.9, start_step=1, end_step=1))
    pruner.criterion.on_before_optimizer_step()  # snip scores |W * grad| from the weights and gradients
    update, hist = [], []
    for _ in range(repeats):  # interleaved, so load from elsewhere hits both alike
        t0 = time.perf_counter()
        pruner.update_masks(0.9)
        t1 = time.perf_counter()
        histograms(pruner.criterion.scores, bins, True)
        t2 = time.perf_counter()
        update.append(t1 - t0)
        hist.append(t2 - t1)
    n = sum(m.weight.numel() for m in mods.values())
    u, h = statistics.median(update), statistics.median(hist)
    return {"params": n, "layers": len(shapes), "mask_update_ms": u * 1e3, "histograms_ms": h * 1e3, "ratio": h / u}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small sets, few repeats")
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--bins", type=int, default=64)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sets = {k: v for k, v in SHAPES.items() if not (args.quick and k == "linear_5M")}
    repeats = 3 if args.quick else args.repeats
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.bins} bins, log10 scale, "
          f"median of {repeats}")
    print(f"{'scores':<18} {'params':>9} {'layers':>6} {'mask update ms':>15} {'histograms ms':>14} {'ratio':>6}  target")
    results = {}
    for name, shapes in sets.items():
        r = measure(shapes, repeats, args.bins)
        results[name] = r
        verdict = "PASS" if r["ratio"] <= 1.0 else "MISS"
        print(f"{name:<18} {r['params']:>9} {r['layers']:>6} {r['mask_update_ms']:>15.2f} "
              f"{r['histograms_ms']:>14.2f} {r['ratio']:>6.2f}  <= 1.00 {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "bins": args.bins, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
