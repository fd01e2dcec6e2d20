"""A name -> object registry shared by criteria, patterns, distributions, schedules, models and datasets."""
from __future__ import annotations

import inspect
import re
from typing import Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to registered classes or builder functions.

    ``kind`` is the config key a name comes from (e.g. ``criterion.criterion_type``), so an unknown name fails
    with a ConfigError that names that key and lists what is registered. :meth:`describe` gives the one-line
    summary (the docstring's first sentence) and the paper of an entry, for ``prunelab list``.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._papers: dict[str, str] = {}

    def register(self, name: str, paper: str = "") -> Callable[[T], T]:
        """Decorator: register the decorated class or function under ``name`` (twice is an error); ``paper``
        names its source where the object has no ``paper`` attribute."""

        def deco(obj: T) -> T:
            self.ensure_free(name)
            self._items[name] = obj
            self._papers[name] = paper
            return obj

        return deco

    def ensure_free(self, name: str) -> None:
        """ValueError if ``name`` is taken."""
        if name in self._items:
            raise ValueError(f"{self.kind}: name {name!r} is already registered to {self._items[name]!r}")

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(self.kind, name, f"registered: {', '.join(sorted(self._items))}") from None

    def describe(self, name: str) -> tuple[str, str]:
        """``(summary, paper)`` of a registered entry: its docstring's first sentence and its source."""
        obj = self.get(name)
        doc = " ".join((inspect.getdoc(obj) or "").split("\n\n")[0].split()).replace("``", "")
        summary = re.split(r"(?<!e\.g)(?<!i\.e)(?<!et al)\. ", doc)[0].rstrip(".")
        return summary, self._papers.get(name) or str(getattr(obj, "paper", "") or "")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        """Names in registration order (``names()`` is sorted)."""
        return iter(list(self._items))
