"""Copy an upstream stream to the client as it arrives, through its dialect's filter."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

import aiohttp

from proxy.config.values import Timeouts
from proxy.core.dialect_errors import StreamErrorMaker
from proxy.core.errors import stream_error_event
from proxy.core.failures import FailureKind
from proxy.providers.base import Progress, StreamFilter
from proxy.routing.send import Reply

KEEPALIVE = b": keepalive\n\n"
"""An SSE comment: every SSE client (both official SDKs) skips it."""

STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


class Sink(Protocol):
    """Where a relayed stream goes: the client's response, or a tap that records it too."""

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self, data: bytes = b"") -> None: ...


def answered_whole(headers: Mapping[str, str]) -> bool:
    """A stream request answered with one JSON body (a server that ignores `stream`): it is
    passed on whole with its own content type. Anything else is relayed as a stream, as
    servers that label their events loosely are common."""
    ctype = headers.get("Content-Type", "").lower()
    return ctype.startswith("application/json") or "+json" in ctype.split(";", 1)[0]


_END_MESSAGES = {
    FailureKind.STREAM_BROKEN: ("The upstream connection broke mid-stream.", "upstream_error"),
    FailureKind.IDLE_TIMEOUT: ("The upstream went silent mid-stream.", "upstream_timeout"),
    FailureKind.SHUTDOWN: ("The gateway is shutting down.", "server_shutting_down"),
}


def end_code(kind: FailureKind) -> str:
    """The `code` of the error event that ends a stream broken by `kind`."""
    return _END_MESSAGES.get(kind, _END_MESSAGES[FailureKind.SHUTDOWN])[1]


class StreamRelay:
    """One committed stream: upstream bytes out to the client, unchanged and unbuffered.

    Each chunk passes the provider's filter (usage observed; the chunk the gateway asked for
    hidden). A watchdog timer (one per idle period, not one per chunk) ends an upstream silent
    for `idle_timeout_s`, where only data counts: comments (`: keepalive`) are forwarded but do
    not keep a stream alive that sends nothing else;
    `abort` lets the drain end the stream. Either way the client gets an in-band error event
    and a clean end of the chunked body, never a silent truncation.
    """

    __slots__ = (
        "_deadline_at",
        "_error_event",
        "_filter",
        "_handle",
        "_idle_s",
        "_ka_handle",
        "_ka_task",
        "_keepalive_s",
        "_last",
        "_loop",
        "_out",
        "_progress",
        "_tail",
        "_wrote",
        "events",
        "failure",
        "upstream",
    )

    def __init__(
        self,
        upstream: Reply,
        timeouts: Timeouts,
        stream_filter: StreamFilter,
        progress: Progress | None = None,
        error_event: StreamErrorMaker = stream_error_event,
        keepalive_s: float | None = None,
    ) -> None:
        self.upstream = upstream
        self._error_event = error_event
        self._filter = stream_filter
        self._progress = progress
        if progress is not None:
            progress.feed(upstream.first)  # in step with what the sender already read
        self.failure: FailureKind | None = None
        self.events = 0
        """SSE events seen (about one token each): the output estimate when usage is missing."""
        self._loop = asyncio.get_running_loop()
        self._idle_s = timeouts.idle_s
        now = self._loop.time()
        self._last = now
        self._deadline_at = now + timeouts.total_s if timeouts.total_s else None
        self._handle: asyncio.TimerHandle | None = None
        self._keepalive_s = keepalive_s
        self._ka_handle: asyncio.TimerHandle | None = None
        self._ka_task: asyncio.Task[None] | None = None
        self._out: Sink | None = None
        self._wrote = now
        self._tail = b"\n\n"

    def abort(self, kind: FailureKind) -> None:
        """End the stream from outside (drain, watchdog): the pending read fails at once."""
        if self.failure is None:
            self.failure = kind
        self.upstream.close()

    async def run(self, out: Sink) -> None:
        self._arm()
        filt = self._filter.chunk
        write = self._writer(out)
        try:
            self.events = self.upstream.first.count(b"data:")
            data = filt(self.upstream.first)
            if data:
                await write(data)
            read = self.upstream.read
            progress = self._progress
            while True:
                try:
                    chunk = await read()
                except (aiohttp.ClientError, OSError):
                    if self.failure is None:
                        self.failure = FailureKind.STREAM_BROKEN
                    break
                if not chunk:
                    break
                if progress is None or progress.feed(chunk):
                    self._last = self._loop.time()
                self.events += chunk.count(b"data:")
                data = filt(chunk)
                if data:
                    await write(data)
            self._out = None
            rest = self._filter.end()
            if rest:
                await out.write(rest)
            if self.failure is not None:
                message, code = _END_MESSAGES.get(self.failure, _END_MESSAGES[FailureKind.SHUTDOWN])
                await out.write(self._error_event(message, "server_error", code))
            await out.write_eof()
        finally:
            self._out = None
            if self._handle is not None:
                self._handle.cancel()
            if self._ka_handle is not None:
                self._ka_handle.cancel()

    def _arm(self) -> None:
        at = self._last + self._idle_s
        if self._deadline_at is not None:
            at = min(at, self._deadline_at)
        self._handle = self._loop.call_at(at, self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if (
            self._deadline_at is not None and now >= self._deadline_at
        ) or now - self._last >= self._idle_s:
            self.abort(FailureKind.IDLE_TIMEOUT)
        else:
            self._arm()

    def _writer(self, out: Sink) -> Callable[[bytes], Awaitable[None]]:
        """How chunks go out: straight, or noted for keepalives (their timer armed here)."""
        if self._keepalive_s is None:
            return out.write
        self._out = out
        self._arm_keepalive(self._wrote)
        return self._write_noted

    async def _write_noted(self, data: bytes) -> None:
        """A write that notes when, and whether it ended between two events (keepalives on)."""
        self._wrote, self._tail = self._loop.time(), (self._tail + data[-4:])[-4:]
        out = self._out
        assert out is not None
        await out.write(data)

    def _arm_keepalive(self, at: float) -> None:
        assert self._keepalive_s is not None
        self._ka_handle = self._loop.call_at(at + self._keepalive_s, self._keepalive)

    def _keepalive(self) -> None:
        """Silent for a whole interval: one comment goes out (from a task; writes are async)."""
        assert self._keepalive_s is not None
        now = self._loop.time()
        if now - self._wrote >= self._keepalive_s and self._out is not None:
            task = self._ka_task
            if task is None or task.done():
                self._ka_task = self._loop.create_task(self._send_keepalive(), name="keepalive")
            self._arm_keepalive(now)
        elif self._out is not None:
            self._arm_keepalive(self._wrote)

    async def _send_keepalive(self) -> None:
        out = self._out
        # Only between two events: inside one (even between its lines) a comment's blank line
        # would end the event early.
        tail = self._tail
        if out is None or not (tail.endswith((b"\n\n", b"\r\r")) or tail == b"\r\n\r\n"):
            return
        self._wrote = self._loop.time()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await out.write(KEEPALIVE)  # a gone client is seen by the relay's own next write
