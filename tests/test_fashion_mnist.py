"""Acceptance tests on real data: Fashion-MNIST from Debian's package, loaded through torchvision's reader, and a
short LeNet-300-100 run of the app on it (the report's end-to-end sweep on it is in test_report.py)."""
from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from appkit import cli, summary, zeros_and_total
from prunelab import data
from prunelab.data.mnist import DEBIAN_FASHION_MNIST, IDX_FILES
from realdata import FMNIST_FAST, require_fashion_mnist

CONF = Path(__file__).parents[1] / "conf"

# the idx headers (LeCun's format: magic 0x0801 labels / 0x0803 images, then big-endian dimensions)
HEADERS = {
    "train-images-idx3-ubyte.gz": (0x803, 60_000, 28, 28), "train-labels-idx1-ubyte.gz": (0x801, 60_000),
    "t10k-images-idx3-ubyte.gz": (0x803, 10_000, 28, 28), "t10k-labels-idx1-ubyte.gz": (0x801, 10_000),
}


@pytest.fixture(autouse=True)
def installed():
    require_fashion_mnist()


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def test_the_debian_files_are_fashion_mnist():
    """Debian recompresses the .gz files (their md5 differ from the upstream README's), so check the content:
    idx headers, and the first training labels of Fashion-MNIST (9 = ankle boot; MNIST's first digit is a 5)."""
    folder = Path(DEBIAN_FASHION_MNIST)
    for name, header in HEADERS.items():
        with gzip.open(folder / name) as f:
            head = f.read(4 * len(header))
        assert struct.unpack(f">{len(header)}I", head) == header, name
    labels = gzip.open(folder / "train-labels-idx1-ubyte.gz").read()[8:18]
    assert list(labels) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]


def test_dataset_fashion_mnist_loads_the_debian_files_without_writing_there(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNELAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("PRUNELAB_DATA", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./data copy can be found instead
    before = _listing(Path(DEBIAN_FASHION_MNIST))
    s = data.build(OmegaConf.load(CONF / "dataset" / "fashion_mnist.yaml"))
    assert _listing(Path(DEBIAN_FASHION_MNIST)) == before
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*-ubyte")) == sorted(IDX_FILES)
    # 60,000 train images (a seeded 10% carved off for validation) and 10,000 test images, 28x28, 10 classes
    assert (len(s.train), len(s.val), len(s.test)) == (54_000, 6_000, 10_000)
    assert s.input_shape == (1, 28, 28) and s.num_classes == 10
    labels = torch.cat([s.train.tensors[1], s.val.tensors[1]])
    assert torch.bincount(labels).tolist() == [6000] * 10 and torch.bincount(s.test.tensors[1]).tolist() == [1000] * 10
    # the test split keeps the file's order: the first ten labels of t10k-labels-idx1-ubyte
    raw = gzip.open(Path(DEBIAN_FASHION_MNIST) / "t10k-labels-idx1-ubyte.gz").read()
    assert s.test.tensors[1][:10].tolist() == list(raw[8:18]) == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    # normalised with the standard constants: the train pixels' mean 0.2860 and std 0.3530 map to 0 and 1
    x = torch.cat([s.train.tensors[0], s.val.tensors[0]])
    assert float(x.mean()) == pytest.approx(0.0, abs=2e-3) and float(x.std()) == pytest.approx(1.0, abs=2e-3)


@pytest.mark.slow
def test_a_short_lenet300_run_on_fashion_mnist(tmp_path):
    """The app as a user runs it on real data: LeNet-300-100 (784-300-100-10, head dense) pruned to 90%."""
    run_dir = tmp_path / "run"
    proc = cli([*FMNIST_FAST, "criterion=magnitude", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = summary(run_dir)
    assert s["status"] == "finished" and s["dataset"] == "fashion_mnist" and s["dense"] is False
    masks = torch.load(run_dir / "masks.pt", weights_only=True)
    assert {n: tuple(m.shape) for n, m in masks.items()} == {"fc1": (300, 784), "fc2": (100, 300)}
    zeros, total = zeros_and_total(masks)
    assert total == 784 * 300 + 300 * 100 and zeros == math.floor(0.9 * total) == s["pruned_zeros"]
    assert s["params/total"] == 266_610  # 784*300+300 + 300*100+100 + 100*10+10: LeNet-300-100's 267k
    assert s["test/acc"] > 0.55, s  # 10 classes: chance is 0.10; 40 steps on 2,000 images already reach ~0.65
