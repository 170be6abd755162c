"""Incremental server-sent-events parser used only to observe events, never to re-encode."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEEvent", "SSEParser", "is_done"]

_BOM = b"\xef\xbb\xbf"
_DATA_PREFIX = b"data: "
_LINE_SLACK = 4096


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event."""

    event: str | None
    """Value of the last `event:` field; None when absent or empty (WHATWG: default type)."""
    data: bytes
    """The `data:` lines joined with b"\\n"."""


def is_done(ev: SSEEvent) -> bool:
    """True for OpenAI's end-of-stream sentinel."""
    return ev.data == b"[DONE]"


class SSEParser:
    """Feed raw body chunks in, get the events each chunk completes.

    Follows the WHATWG event-stream algorithm. Memory is bounded by roughly
    max_event_bytes: an oversized event is dropped, parsing resumes at the next one.
    """

    __slots__ = (
        "_at_start",
        "_buf",
        "_data",
        "_data_size",
        "_discarding",
        "_event",
        "_head",
        "_line_cap",
        "_max",
        "_pending_cr",
        "_skipping_line",
    )

    def __init__(self, max_event_bytes: int = 1 << 20) -> None:
        if max_event_bytes < 1:
            raise ValueError("max_event_bytes must be positive")
        self._max = max_event_bytes
        # Bounds the buffer for a line still missing its end. The same cap applies
        # to complete lines so that results never depend on where chunks were
        # split. The slack leaves room for field names and `event:` values, which
        # do not count towards the event's size.
        self._line_cap = max_event_bytes + _LINE_SLACK
        self._buf = bytearray()
        self._head = b""
        self._at_start = True
        self._pending_cr = False
        self._skipping_line = False
        self._data: list[bytes] = []
        self._data_size = 0
        self._event: str | None = None
        self._discarding = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume one chunk; return the events it completed, in order."""
        if (
            # The common case, one whole `data: {...}` event per chunk with nothing
            # pending, skips the line machinery entirely.
            chunk.endswith(b"\n\n")
            and chunk.startswith(_DATA_PREFIX)
            and not (self._buf or self._data or self._at_start or self._pending_cr)
            and not (self._skipping_line or self._discarding)
            and self._event is None
            and chunk.find(b"\n") == len(chunk) - 2
            and b"\r" not in chunk
            and len(chunk) - 8 <= self._max
        ):
            return [SSEEvent(None, chunk[len(_DATA_PREFIX) : -2])]
        if self._at_start:
            chunk = self._strip_bom(chunk)
        if chunk and self._pending_cr:
            self._pending_cr = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if chunk and self._skipping_line:
            chunk = self._skip_rest_of_line(chunk)
        if not chunk:
            return []
        if b"\n" not in chunk and b"\r" not in chunk:
            self._buf += chunk
            self._check_partial_line()
            return []

        if self._buf:
            text = bytes(self._buf) + chunk
            self._buf.clear()
        else:
            text = chunk
        if b"\r" in text:
            # A CR ending the chunk may be the first half of a CRLF whose LF is in
            # the next chunk; remember it so that LF does not count as a blank line.
            self._pending_cr = text.endswith(b"\r")
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        lines = text.split(b"\n")
        tail = lines.pop()
        out: list[SSEEvent] = []
        for line in lines:
            self._line(line, out)
        if tail:
            self._buf += tail
            self._check_partial_line()
        return out

    def _strip_bom(self, chunk: bytes) -> bytes:
        # WHATWG: one leading BOM is ignored; it may arrive split across chunks.
        head = self._head + chunk
        if len(head) < len(_BOM) and _BOM.startswith(head):
            self._head = head
            return b""
        self._at_start = False
        self._head = b""
        return head[len(_BOM) :] if head.startswith(_BOM) else head

    def _skip_rest_of_line(self, chunk: bytes) -> bytes:
        lf = chunk.find(b"\n")
        cr = chunk.find(b"\r")
        if lf < 0 and cr < 0:
            return b""
        self._skipping_line = False
        if cr < 0 or 0 <= lf < cr:
            return chunk[lf + 1 :]
        if cr + 1 == len(chunk):
            self._pending_cr = True
            return b""
        return chunk[cr + 2 :] if chunk[cr + 1 : cr + 2] == b"\n" else chunk[cr + 1 :]

    def _check_partial_line(self) -> None:
        if len(self._buf) > self._line_cap:
            self._overlong_line(bytes(self._buf[:5]))
            self._buf.clear()
            self._skipping_line = True

    def _overlong_line(self, start: bytes) -> None:
        # Only a data line makes the event unusable; a huge comment or unknown
        # field is just skipped.
        if start == b"data:":
            self._discard_event()

    def _discard_event(self) -> None:
        self._discarding = True
        self._data.clear()
        self._data_size = 0

    def _line(self, line: bytes, out: list[SSEEvent]) -> None:
        if not line:
            self._dispatch(out)
            return
        if line[0] == 0x3A:
            return
        if len(line) > self._line_cap:
            self._overlong_line(line[:5])
            return
        if line.startswith(_DATA_PREFIX):
            self._add_data(line[len(_DATA_PREFIX) :])
            return
        colon = line.find(b":")
        if colon < 0:
            name, value = line, b""
        else:
            name, value = line[:colon], line[colon + 1 :]
            if value[:1] == b" ":
                value = value[1:]
        if name == b"data":
            self._add_data(value)
        elif name == b"event":
            self._event = value.decode("utf-8", "replace") or None

    def _add_data(self, value: bytes) -> None:
        if self._discarding:
            return
        self._data_size += len(value) + (1 if self._data else 0)
        if self._data_size > self._max:
            self._discard_event()
        else:
            self._data.append(value)

    def _dispatch(self, out: list[SSEEvent]) -> None:
        if self._data and not self._discarding:
            data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
            out.append(SSEEvent(self._event, data))
        self._data.clear()
        self._data_size = 0
        self._event = None
        self._discarding = False
