"""Copy an upstream stream to the client as it arrives, through its dialect's filter."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Protocol

import aiohttp

from proxy.config.values import Timeouts
from proxy.core.dialect_errors import StreamErrorMaker
from proxy.core.errors import stream_error_event
from proxy.core.failures import FailureKind
from proxy.providers.base import Progress, StreamFilter
from proxy.routing.send import Reply

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
        "_last",
        "_loop",
        "_progress",
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

    def abort(self, kind: FailureKind) -> None:
        """End the stream from outside (drain, watchdog): the pending read fails at once."""
        if self.failure is None:
            self.failure = kind
        self.upstream.close()

    async def run(self, out: Sink) -> None:
        self._arm()
        filt = self._filter.chunk
        try:
            self.events = self.upstream.first.count(b"data:")
            data = filt(self.upstream.first)
            if data:
                await out.write(data)
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
                    await out.write(data)
            rest = self._filter.end()
            if rest:
                await out.write(rest)
            if self.failure is not None:
                message, code = _END_MESSAGES.get(self.failure, _END_MESSAGES[FailureKind.SHUTDOWN])
                await out.write(self._error_event(message, "server_error", code))
            await out.write_eof()
        finally:
            if self._handle is not None:
                self._handle.cancel()

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
