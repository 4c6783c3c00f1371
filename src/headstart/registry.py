"""The one registry: name -> entry, for backbones, strategies, transferability scores and table formats.

As in timm's ``register_model``, the registered name is the key: nothing else repeats it, registering a name
twice is an error, and every list of names (CLI help, tests, benchmarks) is read from the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from headstart.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to entries (classes, factories or specs) of one kind, in registration order.

    Args:
        kind: What is registered, used in error messages (``"backbone"``, ``"strategy"``).
        error: The exception type raised for an unknown name.

    Example:
        >>> strategies = Registry("strategy")
        >>> @strategies.register("linear")
        ... class Linear: ...
        >>> strategies.get("linear") is Linear
        True
    """

    def __init__(self, kind: str, error: type[Exception] = ConfigError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; returns it.

        Raises:
            ValueError: ``name`` is already registered (a programming error, not a user's).
        """
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its target under ``name``."""
        return lambda entry: self.add(name, entry)

    def get(self, name: str) -> T:
        """The entry for ``name``; raises the registry's error listing the known names."""
        try:
            return self._entries[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} {name!r}; choose one of: {self.known()}") from None

    def known(self) -> str:
        """The registered names, comma-separated, for messages."""
        return ", ".join(self._entries) or "(none)"

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """Registered ``(name, entry)`` pairs, in registration order."""
        return list(self._entries.items())
