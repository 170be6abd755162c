"""The seam to pins shared across gateway instances (Redis); the process keeps its own too."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol


class SharedPins(Protocol):
    """Pins other instances can read: fetched on a local miss, written behind the request."""

    def fetch(self, key: str) -> Awaitable[str | None]:
        """The upstream pinned under `key`, None when none (or the store cannot answer)."""
        ...

    def push(self, key: str, upstream: str, ttl_s: float) -> None:
        """Store a pin in the background (the request does not wait for it)."""
        ...

    def forget(self, key: str) -> None:
        """Drop a pin in the background."""
        ...
