#!/usr/bin/env python
"""Cost of one global unstructured mask update, and the pruner's memory per parameter.

Time, for ~1M, ~5M and ~25M parameters laid out as realistic layers (ResNet convolutions and BERT-base
linears; the exact count is printed), at target sparsity 0.9:

* ``Pattern("1x1", "global").masks(scores, 0.9)``: scores -> keep-masks (the selection itself);
* ``Pruner.update_masks(0.9)``: the whole mask update of a pruning step (masks computed, stored, applied);
* one ``torch.kthvalue`` over the same number of floats (the scores, concatenated beforehand): the floor any
  exact global selection pays; both figures are printed as ratios over it.

Scores are |W| of randomly initialised weights (magnitude). Repeats are interleaved (kthvalue, masks,
update_masks, kthvalue, ...); times are medians over the repeats, ratios the median over the repeats of each
figure over the kthvalue timed next to it. With these layer scales the default per-layer bound
(``max_sparsity_ratio_per_op = 0.98``) holds some layers back, so the bounded selection runs, as in a real run
(the ``capped`` column counts those layers).

Memory: for each criterion, the bytes of the persistent tensors the pruner holds (masks, criterion scores and
any other state, found by walking the pruner's and the criterion's attributes; the layers' weights and
gradients are not counted, shared storage is counted once) after a full hook cycle and a mask update, per
pruned parameter.

Run::

    python benchmarks/mask_update.py                 # 1M, 5M, 25M
    python benchmarks/mask_update.py --quick --json m.json   # 1M only
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import statistics
import sys
import time
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from overhead import CpuMonitor  # noqa: E402  (this directory is on sys.path when run as a script)
from prunelab import Pattern, Pruner, Schedule  # noqa: E402

CRITERIA = ("magnitude", "gradient", "snip", "snip_momentum", "random")
TARGET = 0.9
LIMIT_RATIO_25M = 3.0
LIMIT_BYTES_PER_PARAM = 5.0

# Layer shapes to draw from, per size: (label, target parameter count, shapes cycled through greedily).
RESNET_EARLY = [(64, 64, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3), (128, 128, 3, 3), (256, 64, 1, 1), (64, 256, 1, 1)]
RESNET50_MID = [(256, 256, 3, 3), (1024, 256, 1, 1), (256, 1024, 1, 1), (128, 128, 3, 3), (512, 128, 1, 1)]
BERT_LAYER = [(768, 768)] * 4 + [(3072, 768), (768, 3072)]
RESNET50_LATE = [(512, 512, 3, 3), (2048, 512, 1, 1), (512, 2048, 1, 1)]
SIZES: list[tuple[str, int, list[tuple[int, ...]]]] = [
    ("1M", 1_000_000, RESNET_EARLY),
    ("5M", 5_000_000, RESNET50_MID + BERT_LAYER[:4]),
    ("25M", 25_000_000, BERT_LAYER + RESNET50_LATE),
]


def layer_shapes(total: int, pool: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Cycle through ``pool``, adding every shape that still fits under ``total``, until none fits."""
    shapes: list[tuple[int, ...]] = []
    count = 0
    while True:
        added = False
        for shape in pool:
            n = math.prod(shape)
            if count + n <= total:
                shapes.append(shape)
                count += n
                added = True
        if not added:
            return shapes


def make_weights(shapes: list[tuple[int, ...]], seed: int = 0) -> dict[str, nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for i, shape in enumerate(shapes):
        fan_in = math.prod(shape[1:])
        kind = "conv" if len(shape) == 4 else "linear"
        out[f"{kind}{i}"] = nn.Parameter(torch.randn(shape, generator=g) / math.sqrt(fan_in))
    return out


def timed(f: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def bench_size(label: str, total: int, pool: list[tuple[int, ...]], repeats: int) -> dict[str, Any]:
    shapes = layer_shapes(total, pool)
    weights = make_weights(shapes)
    n = sum(w.numel() for w in weights.values())
    pattern = Pattern("1x1", "global")
    pruner = Pruner(weights, criterion="magnitude", pattern=pattern, schedule=Schedule(TARGET, 10, 10))
    pruner.criterion.on_step_begin()  # scores = |W|
    scores = pruner.criterion.scores
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    k = math.floor(round(TARGET * n, 6))
    # warm-up (first-call allocations), then interleaved repeats
    torch.kthvalue(flat, k)
    pattern.masks(scores, TARGET)
    pruner.update_masks(TARGET)
    kth, masks, update = [], [], []
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            kth.append(timed(lambda: torch.kthvalue(flat, k)))
            masks.append(timed(lambda: pattern.masks(scores, TARGET)))
            update.append(timed(lambda: pruner.update_masks(TARGET)))
    finally:
        gc.enable()
    kth_ms, masks_ms, update_ms = (statistics.median(x) * 1e3 for x in (kth, masks, update))
    kept = sum(int(m.sum()) for m in pruner.masks.values())
    capped = sum(1 for m in pruner.masks.values() if 1 - int(m.sum()) / m.numel() >= pattern.max_ratio - 1e-3)
    return {
        "label": label,
        "params": n,
        "layers": len(shapes),
        "shapes": sorted({str(list(s)) for s in shapes}),
        "repeats": repeats,
        "kthvalue_ms": kth_ms,
        "pattern_masks_ms": masks_ms,
        "update_masks_ms": update_ms,
        # ratios: median over the repeats of each figure over the kthvalue timed next to it
        "pattern_masks_ratio": statistics.median(m / q for m, q in zip(masks, kth)),
        "update_masks_ratio": statistics.median(u / q for u, q in zip(update, kth)),
        "sparsity": 1 - kept / n,
        "layers_at_max_ratio": capped,  # layers the per-op bound holds back (the bounded selection ran)
    }


# ------------------------------------------------------------------------------------------------ memory
def _tensors(obj: Any, path: str, seen: set[int], out: list[tuple[str, torch.Tensor]]) -> None:
    """Every tensor reachable from ``obj`` through attributes, dicts, lists, tuples and sets (not through
    nn.Modules: those are the model's own)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        out.append((path, obj))
        return
    if isinstance(obj, nn.Module) or isinstance(obj, (str, bytes, int, float, bool, type(None))):
        return
    if isinstance(obj, dict):
        for key, val in obj.items():
            _tensors(val, f"{path}[{key!r}]" if not isinstance(key, str) else f"{path}[{key}]", seen, out)
        return
    if isinstance(obj, (list, tuple, set, frozenset)):
        for i, val in enumerate(obj):
            _tensors(val, f"{path}[{i}]", seen, out)
        return
    attrs = getattr(obj, "__dict__", None)
    if isinstance(attrs, dict):
        for key, val in attrs.items():
            _tensors(val, f"{path}.{key}", seen, out)
    for key in getattr(type(obj), "__slots__", ()):
        if hasattr(obj, key):
            _tensors(getattr(obj, key), f"{path}.{key}", seen, out)


def persistent_bytes(pruner: Pruner, weights: dict[str, nn.Parameter]) -> tuple[int, dict[str, int]]:
    """Bytes of the distinct storages of the tensors the pruner (and its criterion) hold, less the weights'
    and gradients' own; and a breakdown by top-level attribute path."""
    found: list[tuple[str, torch.Tensor]] = []
    _tensors(pruner, "pruner", set(), found)
    model_storages = set()
    for w in weights.values():
        model_storages.add(w.untyped_storage().data_ptr())
        if w.grad is not None:
            model_storages.add(w.grad.untyped_storage().data_ptr())
    counted: set[int] = set()
    total = 0
    by_attr: dict[str, int] = {}
    for path, t in found:
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr in model_storages or ptr in counted or st.nbytes() == 0:
            continue
        counted.add(ptr)
        total += st.nbytes()
        key = path.split("[")[0]
        by_attr[key] = by_attr.get(key, 0) + st.nbytes()
    return total, by_attr


def bench_memory(shapes: list[tuple[int, ...]]) -> dict[str, Any]:
    out = {}
    for crit in CRITERIA:
        weights = make_weights(shapes)
        n = sum(w.numel() for w in weights.values())
        pruner = Pruner(weights, criterion=crit, pattern="1x1", schedule=Schedule(TARGET, 2, 2))
        g = torch.Generator().manual_seed(1)
        pruner.on_train_begin()
        for step in range(3):  # steps 0, 1, 2: scores every step where due; step 2 prunes
            pruner.on_step_begin(step)
            for w in weights.values():
                w.grad = torch.randn(w.shape, generator=g)
            pruner.on_before_optimizer_step()
            pruner.on_after_optimizer_step()
        total, by_attr = persistent_bytes(pruner, weights)
        out[crit] = {"bytes": total, "params": n, "bytes_per_param": total / n, "by_attribute": by_attr}
        del pruner, weights
        gc.collect()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1M parameters only, fewer repeats")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="repeats per size (default 5, 3 at 25M; quick: 3)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("prunelab").setLevel(logging.ERROR)
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = SIZES[:1] if args.quick else SIZES
    print(f"prunelab mask-update benchmark: torch {torch.__version__}, "
          f"torch.set_num_threads({torch.get_num_threads()}), {os.cpu_count()} CPUs, target {TARGET}, "
          f"median of {repeats} repeats")
    t_start = time.perf_counter()
    monitor = CpuMonitor()
    results = []
    print(f"\n{'size':<5} {'params':>11} {'layers':>6} {'kthvalue ms':>12} {'Pattern.masks ms':>22} "
          f"{'Pruner.update_masks ms':>24} {'sparsity':>8} {'capped':>6}")
    for label, total, pool in sizes:
        r = bench_size(label, total, pool, repeats if (args.repeats or total < 10_000_000) else min(repeats, 3))
        results.append(r)
        print(f"{label:<5} {r['params']:>11,} {r['layers']:>6} {r['kthvalue_ms']:>12.1f} "
              f"{r['pattern_masks_ms']:>12.1f} ({r['pattern_masks_ratio']:>5.2f}x) "
              f"{r['update_masks_ms']:>14.1f} ({r['update_masks_ratio']:>5.2f}x) {r['sparsity']:>8.4f} "
              f"{r['layers_at_max_ratio']:>6}", flush=True)
    memory = bench_memory(layer_shapes(SIZES[0][1], SIZES[0][2]))
    print(f"\npruner memory (persistent tensors held by the pruner and its criterion, over "
          f"{next(iter(memory.values()))['params']:,} parameters)")
    for crit, m in memory.items():
        parts = ", ".join(f"{k.replace('pruner.', '')} {v / m['params']:.2f}" for k, v in m["by_attribute"].items())
        print(f"  {crit:<14} {m['bytes_per_param']:.3f} bytes/param  ({parts})")

    targets = []
    big = next((r for r in results if r["label"] == "25M"), None)
    if big is not None:
        for key, what in (("pattern_masks_ratio", "Pattern('1x1','global').masks"),
                          ("update_masks_ratio", "Pruner.update_masks")):
            targets.append({"name": f"25M: {what} / kthvalue", "value": big[key], "limit": LIMIT_RATIO_25M,
                            "pass": bool(big[key] <= LIMIT_RATIO_25M)})
    for crit, m in memory.items():
        targets.append({"name": f"memory {crit}: bytes per parameter", "value": m["bytes_per_param"],
                        "limit": LIMIT_BYTES_PER_PARAM, "pass": bool(m["bytes_per_param"] <= LIMIT_BYTES_PER_PARAM)})
    print("\n== targets")
    for t in targets:
        print(f"  {'PASS' if t['pass'] else 'MISS'}  {t['name']:<50} {t['value']:>7.3f}  (limit {t['limit']:.3f})")
    total_s = time.perf_counter() - t_start
    foreign = monitor.foreign_share()
    print("\n" + monitor.footer(total_s, foreign, "figures"))
    if args.json:
        doc = {
            "benchmark": "mask_update",
            "config": {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                       "quick": args.quick, "repeats": repeats, "target": TARGET, "seconds": total_s,
                       "foreign_cpu_share": foreign},
            "sizes": results,
            "memory": memory,
            "targets": targets,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
