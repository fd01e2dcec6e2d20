"""Small files in the real on-disk formats of MNIST / Fashion-MNIST (IDX) and CIFAR-10 (pickled batches), so
the torchvision loading code runs in tests without a download."""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """IDX format (LeCun's MNIST files): magic 0x0000 08 <ndim>, big-endian int32 dims, then uint8 data."""
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        with gzip.open(path, "wb") as f:
            f.write(blob)
    else:
        path.write_bytes(blob)


def write_mnist(root: Path, folder: str, gz: bool, n_train: int = 50, n_test: int = 20):
    rng = np.random.default_rng(0)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(raw / name, arr, gz)
    return arrays


def write_cifar(root: Path, per_batch: int = 8, n_test: int = 10):
    """The python-version CIFAR-10 layout: pickled dicts with 'data' uint8 [N, 3072] (CHW row-major) and
    'labels', in cifar-10-batches-py/, plus batches.meta with label_names."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for i, fname in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = n_test if fname == "test_batch" else per_batch
        entry = {
            "batch_label": f"batch {i}",
            "labels": rng.integers(0, 10, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}_{j}.png" for j in range(n)],
        }
        with open(folder / fname, "wb") as f:
            pickle.dump(entry, f)
        batches[fname] = entry
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3072}, f)
    return batches


def write_cifar100(root: Path, n_train: int = 40, n_test: int = 12):
    """The python-version CIFAR-100 layout: cifar-100-python/{train,test} pickles with 'data' uint8 [N, 3072]
    (CHW row-major), 'fine_labels' (0..99) and 'coarse_labels' (0..19), plus meta with the label names."""
    rng = np.random.default_rng(2)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for fname, n in (("train", n_train), ("test", n_test)):
        entry = {
            "filenames": [f"img_{fname}_{j}.png" for j in range(n)],
            "batch_label": f"{fname} batch",
            "fine_labels": rng.integers(0, 100, n).tolist(),
            "coarse_labels": rng.integers(0, 20, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        with open(folder / fname, "wb") as f:
            pickle.dump(entry, f)
        out[fname] = entry
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"fine{i}" for i in range(100)],
                     "coarse_label_names": [f"coarse{i}" for i in range(20)]}, f)
    return out


def write_image_folder(root: Path, classes=("ant", "bee", "cat"), per_class: dict | None = None,
                       size: tuple[int, int] = (20, 24)):
    """An ImageFolder tree of RGB PNGs: root/train/<class>/*.png and root/val/<class>/*.png (``per_class`` images
    per class and split; sizes vary around ``size`` = (height, width) so that transforms must resize). Returns
    {split: [(path, class_index, uint8 array HxWx3)]}, classes in sorted order."""
    from PIL import Image

    per_class = per_class or {"train": 6, "val": 2}
    rng = np.random.default_rng(3)
    out: dict = {}
    for split, n in per_class.items():
        out[split] = []
        for c, name in enumerate(sorted(classes)):
            (root / split / name).mkdir(parents=True)
            for j in range(n):
                h, w = size[0] + int(rng.integers(0, 5)), size[1] + int(rng.integers(0, 5))
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                path = root / split / name / f"{name}_{j:03d}.png"
                Image.fromarray(arr).save(path)
                out[split].append((path, c, arr))
    return out
