"""Copy an upstream stream to the client as it arrives, through its dialect's filter."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from proxy.config.values import Timeouts
from proxy.core.dialect_errors import StreamErrorMaker
from proxy.core.errors import stream_error_event
from proxy.core.failures import FailureKind
from proxy.providers.base import StreamFilter
from proxy.routing.send import Reply

STREAM_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}

_END_MESSAGES = {
    FailureKind.STREAM_BROKEN: ("The upstream connection broke mid-stream.", "upstream_error"),
    FailureKind.IDLE_TIMEOUT: ("The upstream went silent mid-stream.", "upstream_timeout"),
    FailureKind.SHUTDOWN: ("The gateway is shutting down.", "server_shutting_down"),
}


class StreamRelay:
    """One committed stream: upstream bytes out to the client, unchanged and unbuffered.

    Each chunk passes the provider's filter (usage observed; the chunk the gateway asked for
    hidden). A watchdog timer (one per idle period, not one per chunk) ends a silent upstream;
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
        "failure",
        "upstream",
    )

    def __init__(
        self,
        upstream: Reply,
        timeouts: Timeouts,
        stream_filter: StreamFilter,
        error_event: StreamErrorMaker = stream_error_event,
    ) -> None:
        self.upstream = upstream
        self._error_event = error_event
        self._filter = stream_filter
        self.failure: FailureKind | None = None
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

    async def run(self, out: web.StreamResponse) -> None:
        self._arm()
        filt = self._filter.chunk
        try:
            data = filt(self.upstream.first)
            if data:
                await out.write(data)
            read = self.upstream.read
            while True:
                try:
                    chunk = await read()
                except (aiohttp.ClientError, OSError):
                    if self.failure is None:
                        self.failure = FailureKind.STREAM_BROKEN
                    break
                if not chunk:
                    break
                self._last = self._loop.time()
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
