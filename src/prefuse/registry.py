"""Name -> object registries: one way to add an encoder, a fusion, a format or a task."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table filled by the ``register`` decorator."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str, field: str | None = None) -> T:
        """The entry called ``name``; a ``ConfigError`` naming ``field`` if there is none."""
        try:
            return self._items[name]
        except KeyError:
            raise ConfigError(field or self.kind,
                              f"unknown {self.kind} '{name}'; choose from {sorted(self._items)}"
                              ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)
