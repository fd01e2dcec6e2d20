"""Real data in tests: Fashion-MNIST from Debian's `dataset-fashion-mnist` package (CI installs it; `.ci/run`).

Tests that need it call :func:`require_fashion_mnist`: it skips with the reason and the install command where the
package is absent, and fails instead under CI (``CI=true``), where a missing package is a broken set-up.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from prunelab.data.mnist import DEBIAN_FASHION_MNIST, IDX_FILES

# a real-data run that takes seconds: LeNet-300-100 on 2,000 training images, 40 steps, evaluated on 1,000
FMNIST_FAST = ["dataset=fashion_mnist", "model=lenet300", "dataset.limit=2000", "dataset.eval_limit=1000",
               "trainer.max_steps=40", "schedule.start_step=5", "schedule.end_step=25", "schedule.pruning_frequency=5",
               "trainer.eval_every=20", "trainer.progress=none", "logger=none", "trainer.num_threads=1"]


def fashion_mnist_installed() -> bool:
    return all((Path(DEBIAN_FASHION_MNIST) / f"{f}.gz").is_file() for f in IDX_FILES)


def require_fashion_mnist() -> None:
    if fashion_mnist_installed():
        return
    reason = (f"Fashion-MNIST not installed: Debian's package dataset-fashion-mnist puts it in {DEBIAN_FASHION_MNIST} "
              "(apt-get install -y dataset-fashion-mnist)")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; CI must install it (.ci/run)")
    pytest.skip(reason)
