"""A name -> object registry shared by criteria, patterns, distributions, schedules, models and datasets."""
from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import ConfigError
from .options import parse_options

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to registered classes or builder functions.

    ``kind`` is the config key a name comes from (e.g. ``criterion.criterion_type``), so an unknown name fails
    with a ConfigError that names that key and lists what is registered. :meth:`describe` gives the one-line
    summary (the docstring's first sentence) and the paper of an entry, for ``prunelab list``.

    An entry may declare its config keys: a dataclass given as ``options=`` at registration (or an ``Options``
    class attribute of a registered class); :meth:`parse` checks a config against it (unknown keys and wrong
    types are one-line errors), so a new model or dataset stays one registered builder plus one YAML.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._papers: dict[str, str] = {}
        self._options: dict[str, type | None] = {}

    def register(self, name: str, paper: str = "", options: type | None = None) -> Callable[[T], T]:
        """Decorator: register the decorated class or function under ``name`` (twice is an error); ``paper``
        names its source where the object has no ``paper`` attribute; ``options`` is the dataclass of its config
        keys (default: the object's ``Options`` attribute, if any)."""
        if options is not None and not dataclasses.is_dataclass(options):
            raise TypeError(f"{self.kind}: options of {name!r} must be a dataclass, not {options!r}")

        def deco(obj: T) -> T:
            self.ensure_free(name)
            self._items[name] = obj
            self._papers[name] = paper
            self._options[name] = options
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

    def options(self, name: str) -> type | None:
        """The dataclass of the entry's config keys, or None where it declares none (its keys are not checked)."""
        declared = self._options.get(name) or getattr(self.get(name), "Options", None)
        return declared if dataclasses.is_dataclass(declared) else None

    def parse(self, name: str, config: Any, ignore: tuple[str, ...] = ()) -> Any:
        """``config`` (the whole group, e.g. ``cfg.model``) checked against :meth:`options`: an instance of the
        dataclass, or None where the entry declares no options. The group's prefix is the first part of
        :attr:`kind` (``model.name`` -> ``model``)."""
        options = self.options(name)
        if options is None:
            return None
        prefix = self.kind.split(".")[0]
        return parse_options(prefix, options, config, f"{prefix} {name}", ignore=ignore)

    def describe(self, name: str) -> tuple[str, str]:
        """``(summary, paper)`` of a registered entry: its docstring's first sentence and its source."""
        obj = self.get(name)
        doc = " ".join((inspect.getdoc(obj) or "").split("\n\n")[0].split()).replace("``", "")
        doc = re.sub(r":\w+:`~?([^`]+)`", r"\1", doc)  # Sphinx roles (:class:`X`) read as their target
        summary = re.split(r"(?<!e\.g)(?<!i\.e)(?<!et al)\. ", doc)[0].rstrip(".")
        return summary, self._papers.get(name) or str(getattr(obj, "paper", "") or "")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        """Names in registration order (``names()`` is sorted)."""
        return iter(list(self._items))
