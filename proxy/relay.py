"""Copy an upstream stream to the client as it arrives, observe usage, end failures cleanly."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from proxy.config import Timeouts
from proxy.errors import FailureKind, stream_error_event
from proxy.usage import Usage, UsageTap, drop_usage_events

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


_MAX_PENDING = 1 << 20


class StreamRelay:
    """One committed stream: upstream bytes out to the client, unchanged and unbuffered.

    A watchdog timer (one per idle period, not one per chunk) ends a silent upstream; `abort`
    lets the drain end the stream. Either way the client gets an in-band error event and a
    clean end of the chunked body, never a silent truncation.
    """

    __slots__ = (
        "_deadline_at",
        "_handle",
        "_idle_s",
        "_last",
        "_loop",
        "_pending",
        "_strip",
        "_tap",
        "failure",
        "upstream",
    )

    def __init__(
        self, upstream: aiohttp.ClientResponse, timeouts: Timeouts, *, strip_usage: bool = False
    ) -> None:
        self.upstream = upstream
        self._strip = strip_usage
        self._pending = b""
        self.failure: FailureKind | None = None
        self._tap = UsageTap()
        self._loop = asyncio.get_running_loop()
        self._idle_s = timeouts.idle_s
        now = self._loop.time()
        self._last = now
        self._deadline_at = now + timeouts.total_s if timeouts.total_s else None
        self._handle: asyncio.TimerHandle | None = None

    @property
    def usage(self) -> Usage | None:
        return self._tap.usage

    def abort(self, kind: FailureKind) -> None:
        """End the stream from outside (drain, watchdog): the pending read fails at once."""
        if self.failure is None:
            self.failure = kind
        self.upstream.close()

    async def run(self, out: web.StreamResponse, first: bytes) -> None:
        self._arm()
        try:
            self._tap.feed(first)
            await self._forward(out, first)
            content = self.upstream.content
            while True:
                try:
                    chunk = await content.readany()
                except (aiohttp.ClientError, OSError):
                    if self.failure is None:
                        self.failure = FailureKind.STREAM_BROKEN
                    break
                if not chunk:
                    break
                self._last = self._loop.time()
                self._tap.feed(chunk)
                await self._forward(out, chunk)
            if self._pending:
                await out.write(self._pending)
            if self.failure is not None:
                message, code = _END_MESSAGES.get(self.failure, _END_MESSAGES[FailureKind.SHUTDOWN])
                await out.write(stream_error_event(message, "server_error", code))
            await out.write_eof()
        finally:
            if self._handle is not None:
                self._handle.cancel()

    async def _forward(self, out: web.StreamResponse, chunk: bytes) -> None:
        if self._strip:
            chunk = self._without_usage_event(chunk)
            if not chunk:
                return
        await out.write(chunk)

    def _without_usage_event(self, chunk: bytes) -> bytes:
        """Drop the usage-only chunk the gateway asked for on the client's behalf.

        Only whole events are forwarded while stripping (a partial one waits for its end),
        so the usage event can be cut out exactly; every other byte passes unchanged.
        """
        if self._pending:
            chunk = self._pending + chunk
            self._pending = b""
        cut = chunk.rfind(b"\n\n") + 2
        if cut < 2:
            if len(chunk) > _MAX_PENDING:  # not SSE framed as expected: stop holding back
                self._strip = False
                return chunk
            self._pending = chunk
            return b""
        whole, self._pending = chunk[:cut], chunk[cut:]
        return drop_usage_events(whole)

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
