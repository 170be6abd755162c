"""An in-memory cache store: entries with a TTL, a cap per entry and on the total, LRU eviction."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    """One recorded answer: the body as the client got it, and whether it was a stream
    (its SSE chunks, in their original cut) or a whole JSON body."""

    chunks: tuple[bytes, ...]
    stream: bool
    expires: float
    with_usage: bool = False
    """A stream recorded with its usage-only chunk (the client asked for it)."""
    usage: tuple[int, int, int] | None = None
    """(tokens in, out, cached) of the answer, for the ledger row of a hit."""

    @property
    def size(self) -> int:
        return sum(len(c) for c in self.chunks)


class LRUStore:
    """Bounded by bytes, not entries: a few long answers must not push the process out of
    memory. Every call takes `now` (monotonic seconds)."""

    __slots__ = ("_entries", "max_entry_bytes", "max_total_bytes", "total")

    def __init__(self, max_entry_bytes: int, max_total_bytes: int) -> None:
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self.max_entry_bytes = max_entry_bytes
        self.max_total_bytes = max_total_bytes
        self.total = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str, now: float) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: Entry) -> bool:
        """Keep `entry` (False when it is larger than one entry may be)."""
        size = entry.size
        if size > self.max_entry_bytes or size > self.max_total_bytes:
            return False
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        self.total += size
        while self.total > self.max_total_bytes:
            self._drop(next(iter(self._entries)))
        return True

    def _drop(self, key: str) -> None:
        self.total -= self._entries.pop(key).size
