"""Golden runs: short runs of every wave-1 criterion pinned to the masks and weights the first wave produced.

The refactor of wave 2 must not change a single bit of them. ``tests/golden/short_runs.json`` was written by
``python tests/test_golden.py --write`` before the refactor. Bitwise (sha256) equality is asserted where the
torch version and the CPU's vector capability equal the recorded ones (float kernels may round differently on
another ISA); elsewhere the per-layer kept counts must be equal and the weights' sums equal to 1e-5.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from appkit import FAST, run_inprocess  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "short_runs.json"
CASES = {
    "magnitude": ["criterion=magnitude"],
    "gradient": ["criterion=gradient"],
    "snip": ["criterion=snip"],
    "snip_momentum": ["criterion=snip_momentum"],
    # the first wave drew random's scores from the model initialisation's own stream (fixed 2026-12-08); the key
    # that keeps that draw must still give its runs bit for bit
    "random": ["criterion=random", "criterion.stream=model_init"],
    "magnitude-4x1-local": ["criterion=magnitude", "pattern=4x1", "pattern.scope=local"],
    "snip_momentum-2in4": ["criterion=snip_momentum", "pattern=2in4"],
    "snip-channel": ["criterion=snip", "pattern=channel", "schedule.target_sparsity=0.5"],
}


def _fingerprint(run_dir: Path) -> dict:
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    masks = torch.load(run_dir / "masks.pt", weights_only=True)
    weights = {k: v for k, v in ck["model"].items() if k.endswith("weight")}
    h_masks, h_weights = hashlib.sha256(), hashlib.sha256()
    for name in sorted(masks):
        h_masks.update(name.encode() + masks[name].contiguous().numpy().tobytes())
    for name in sorted(weights):
        h_weights.update(name.encode() + weights[name].contiguous().numpy().tobytes())
    return {
        "masks_sha256": h_masks.hexdigest(),
        "weights_sha256": h_weights.hexdigest(),
        "kept": {n: int(m.sum()) for n, m in sorted(masks.items())},
        "weight_sums": {n: float(w.double().sum()) for n, w in sorted(weights.items())},
        "weight_abs_sums": {n: float(w.double().abs().sum()) for n, w in sorted(weights.items())},
    }


def _machine() -> dict:
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _run(case: str, tmp: Path) -> dict:
    run_dir = tmp / case
    run_inprocess([*CASES[case], *FAST, "logger=none", "seed=3"], run_dir)
    return _fingerprint(run_dir)


@pytest.mark.parametrize("case", list(CASES))
def test_short_run_matches_golden(case, tmp_path):
    golden = json.loads(GOLDEN.read_text())
    want, got = golden["cases"][case], _run(case, tmp_path)
    assert got["kept"] == want["kept"]
    for key in ("weight_sums", "weight_abs_sums"):
        assert got[key].keys() == want[key].keys()
        for name, value in want[key].items():
            assert got[key][name] == pytest.approx(value, rel=1e-5, abs=1e-6), (key, name)
    if golden["machine"] == _machine():
        assert got["masks_sha256"] == want["masks_sha256"]
        assert got["weights_sha256"] == want["weights_sha256"]


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cases = {case: _run(case, Path(tmp)) for case in CASES}
    GOLDEN.write_text(json.dumps({"machine": _machine(), "cases": cases}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
