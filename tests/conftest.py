"""Test order for the parallel run (README: ``-n 3 --dist loadfile``): the files that take minutes are handed out
first, so the suite does not end waiting on one of them while the other workers idle."""
from __future__ import annotations

import pytest
import torch

LONGEST_FIRST = ("test_kill_resume.py", "test_badinput.py", "test_sweep.py", "test_distributed.py",
                 "test_benchmarks.py", "test_report.py", "test_dashboard.py", "test_reliability.py", "test_regrowth.py")


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: every other test keeps its order


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models: one intra-op thread is ~10x faster than two contending ones (and just as exact); restored
    after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
