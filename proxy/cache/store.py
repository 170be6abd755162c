"""Where cached answers live: the store seam, this process's memory, and the entry codec."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Protocol

import orjson

from proxy.cache.lru import Entry, LRUStore

_LEN = struct.Struct(">I")


class CacheStore(Protocol):
    """Entries by cache key. `put` never waits for a remote store (the answer goes out first)."""

    async def get(self, key: str) -> Entry | None: ...

    def put(self, key: str, entry: Entry, ttl_s: float) -> None: ...

    async def close(self) -> None: ...


class MemoryStore:
    """This process's entries, bounded in bytes, least recently used out first."""

    def __init__(
        self,
        max_entry_bytes: int,
        max_total_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lru = LRUStore(max_entry_bytes, max_total_bytes)
        self.clock = clock

    async def get(self, key: str) -> Entry | None:
        return self.lru.get(key, self.clock())

    def put(self, key: str, entry: Entry, ttl_s: float) -> None:
        self.lru.put(key, _expiring(entry, self.clock() + ttl_s))

    async def close(self) -> None:
        return None


def _expiring(entry: Entry, expires: float) -> Entry:
    return Entry(entry.chunks, entry.stream, expires, entry.with_usage, entry.usage)


def encode(entry: Entry) -> bytes:
    """One header line of JSON (form, usage, chunk sizes), then the chunks back to back."""
    head = orjson.dumps(
        {
            "s": entry.stream,
            "w": entry.with_usage,
            "u": entry.usage,
            "n": [len(c) for c in entry.chunks],
        }
    )
    return b"".join((_LEN.pack(len(head)), head, *entry.chunks))


def decode(raw: bytes) -> Entry | None:
    """The entry `encode` wrote; None for anything else (another version, a foreign key)."""
    try:
        (size,) = _LEN.unpack_from(raw)
        head = orjson.loads(raw[4 : 4 + size])
        at = 4 + size
        chunks = []
        for n in head["n"]:
            chunks.append(raw[at : at + n])
            at += n
        usage = head["u"]
        if at != len(raw):
            return None
        return Entry(
            tuple(chunks),
            bool(head["s"]),
            0.0,
            bool(head["w"]),
            None if usage is None else (int(usage[0]), int(usage[1]), int(usage[2])),
        )
    except (struct.error, orjson.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
        return None
