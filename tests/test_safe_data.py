"""A dataset file cannot run code: a tampered CIFAR-10 batch under dataset.root is refused with one line, and what
it would have executed never runs (here: creating a file). Genuine batches, in every pickle protocol, still load."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from appkit import cli
from fakedata import write_cifar


class _Exploit:
    """Unpickling this runs ``open(path, "w")``: what a tampered dataset file could do with any function."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_tampered_cifar_batch_is_refused_and_runs_nothing(tmp_path):
    write_cifar(tmp_path, per_batch=8, n_test=8)
    evidence = tmp_path / "pwned"
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    entry = pickle.loads(batch.read_bytes())  # a genuine batch, with the exploit hidden in one of its values
    entry["filenames"] = [_Exploit(evidence)]
    batch.write_bytes(pickle.dumps(entry, protocol=2))
    proc = cli(["dataset=cifar10", "model=resnet20", f"dataset.root={tmp_path}", "logger=none",
                "trainer.max_steps=4", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert lines[0].startswith(f"prunelab: error: dataset.root='{tmp_path}'") and "data_batch_3" in lines[0] \
        and "io.open" in lines[0], lines[0]
    assert not evidence.exists()  # the exploit never ran
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_batches_load_in_every_protocol(tmp_path, protocol):
    from prunelab.data.cifar import load_split, read_batch

    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"labels": [3, 7], b"data": data, b"filenames": [b"a.png", b"b.png"]},
                                  protocol=protocol))
    assert read_batch(str(path))["labels"] == [3, 7]  # byte keys (the official files' Python 2 pickles) as str
    x, y = load_split(str(tmp_path), ("data_batch_1",))
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [3, 7]
    assert x[1, 2, 31, 31].item() == data[1, 3071]  # CHW row-major, as the official layout
    os.remove(path)
