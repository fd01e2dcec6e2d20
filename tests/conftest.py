"""Test order for the parallel run (README: ``-n 3 --dist loadfile``): the files that take minutes are handed out
first, so the suite does not end waiting on one of them while the other workers idle."""
from __future__ import annotations

LONGEST_FIRST = ("test_badinput.py", "test_reliability.py", "test_sweep.py", "test_distributed.py",
                 "test_report.py", "test_benchmarks.py", "test_dashboard.py")


def pytest_collection_modifyitems(items: list) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: every other test keeps its order
