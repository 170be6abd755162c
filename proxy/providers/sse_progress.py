"""Tell data events from comments in a raw SSE byte stream, chunk by chunk, without parsing it."""

from __future__ import annotations

import re

_D = 0x64  # b"d": the first byte of a `data` field line, the only line that carries an answer
_START, _DATA, _OTHER = 0, 1, 2
_BREAKS = (0x0A, 0x0D)


class DataProgress:
    """Says whether a chunk carries part of a `data:` line; `: keepalive` comments do not count.

    Used for the time-to-first-byte and idle deadlines of a stream, so an upstream that only
    sends comments is seen as silent. It looks at the first byte of each line (a comment starts
    with `:`, a data field with `data`), carried across chunk boundaries; the common chunk, a
    whole `data: ...\\n\\n` event, costs two byte comparisons and two `in` scans.
    """

    __slots__ = ("_state",)

    def __init__(self) -> None:
        self._state = _START

    def feed(self, chunk: bytes) -> bool:
        if not chunk:
            return False
        state = self._state
        head = chunk[0]
        seen = (state == _START and head == _D) or (state == _DATA and head not in _BREAKS)
        if not seen:
            seen = b"\nd" in chunk or b"\rd" in chunk
        if chunk[-1] in _BREAKS:
            self._state = _START
            return seen
        last = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
        if last >= 0:
            self._state = _DATA if chunk[last + 1] == _D else _OTHER
        elif state == _START:
            self._state = _DATA if head == _D else _OTHER
        return seen


_CONTENT = re.compile(rb"(?:^|\n)event: ?(?:content_block_\w+|error|message_delta|message_stop)")
_END = re.compile(rb"\r?\n\r?\n")


class OpeningProgress:
    """For the sender of a Messages stream: progress only once the first content event (or an
    error event) has come whole, so the events before it (`message_start`, pings) are held
    with it and an error among them can still fail over. Bounded by the sender's byte cap and
    its time-to-first-byte deadline."""

    __slots__ = ("_at", "_seen")

    def __init__(self) -> None:
        self._seen = bytearray()
        self._at = -1

    def feed(self, chunk: bytes) -> bool:
        seen = self._seen
        start = max(0, len(seen) - 40)  # an event name cut by the edge of the last chunk
        seen += chunk
        if self._at < 0:
            m = _CONTENT.search(seen, start)
            if m is None:
                return False
            self._at = m.end()
        return _END.search(seen, self._at) is not None
