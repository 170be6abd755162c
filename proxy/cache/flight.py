"""Single-flight: identical concurrent misses make one upstream call; the others wait for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


class Flight:
    """One upstream call in progress, its chunks as they arrive, for every waiter to follow."""

    __slots__ = ("_changed", "chunks", "done", "ok", "stream", "usage", "with_usage")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.stream = False
        """The leader relays a stream (its chunks are SSE), else one JSON body."""
        self.with_usage = False
        """The leader's stream carries the usage-only chunk (its client asked for it)."""
        self.usage: tuple[int, int, int] | None = None
        """(tokens in, out, cached) of the answer, set when the leader lands."""
        self.done = False
        self.ok = False
        self._changed = asyncio.Event()

    def add(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self._changed.set()

    def finish(self, ok: bool) -> None:
        """The leader is done: `ok` False (an error, a cut stream) sends followers upstream."""
        self.done, self.ok = True, ok
        self._changed.set()

    async def follow(self) -> AsyncIterator[bytes]:
        """The chunks so far, then each as it arrives, until the leader finishes."""
        at = 0
        while True:
            while at < len(self.chunks):
                yield self.chunks[at]
                at += 1
            if self.done:
                return
            self._changed.clear()
            if at < len(self.chunks) or self.done:
                continue
            await self._changed.wait()


class Flights:
    """The flights in progress by cache key; the first miss leads, later ones follow."""

    __slots__ = ("_by_key",)

    def __init__(self) -> None:
        self._by_key: dict[str, Flight] = {}

    def join(self, key: str) -> tuple[Flight, bool]:
        """(the flight, True when the caller leads it and must call upstream)."""
        flight = self._by_key.get(key)
        if flight is not None:
            return flight, False
        flight = self._by_key[key] = Flight()
        return flight, True

    def land(self, key: str, flight: Flight, ok: bool) -> None:
        flight.finish(ok)
        if self._by_key.get(key) is flight:
            del self._by_key[key]

    def __len__(self) -> int:
        return len(self._by_key)
