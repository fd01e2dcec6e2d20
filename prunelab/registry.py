"""A name -> object registry shared by criteria, models and datasets."""
from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to registered classes or builder functions.

    ``kind`` is the config key a name comes from (e.g. ``criterion.criterion_type``), so an unknown name fails
    with a ConfigError that names that key and lists what is registered.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register the decorated class or function under ``name`` (twice is an error)."""

        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind}: name {name!r} is already registered to {self._items[name]!r}")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(self.kind, name, f"registered: {', '.join(sorted(self._items))}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
