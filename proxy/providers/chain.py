"""Two stream filters in a row: how a Messages client reads a dialect translated via chat."""

from __future__ import annotations

from proxy.core.exchange import Usage
from proxy.providers.base import StreamFilter


class Chained:
    """A `StreamFilter` feeding what `first` gives into `second`, chunk by chunk (no buffering
    beyond what each translator holds itself). Usage is the first's: it reads the upstream."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: StreamFilter, second: StreamFilter) -> None:
        self._first = first
        self._second = second

    @property
    def usage(self) -> Usage | None:
        return self._first.usage or self._second.usage

    def chunk(self, data: bytes) -> bytes:
        mid = self._first.chunk(data)
        return self._second.chunk(mid) if mid else b""

    def end(self) -> bytes:
        rest = self._first.end()
        out = self._second.chunk(rest) if rest else b""
        return out + self._second.end()
