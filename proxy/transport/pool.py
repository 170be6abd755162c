"""Keep-alive upstream connections per origin, on aiohttp's own response protocol and C parser.

The gateway's upstream requests are all alike (a POST of bytes it already holds, to an origin
it already knows), so most of what `aiohttp.ClientSession` does per request (URL building,
header merging, cookie jar, redirect and tracing hooks, a request and a response object, a
timer context, the connector's connection keys) is work it would pay for nothing. This pool
keeps aiohttp's `ResponseHandler` (the protocol aiohttp's own connector creates, with its
llhttp-based parser and flow control) and hands connections out directly.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from aiohttp.client_proto import ResponseHandler

IDLE_SWEEP_S = 15.0
"""How often (at most) idle connections older than the keep-alive allowance are closed."""


class ConnectTimeout(OSError):
    """No connection within the upstream's `connect_s`."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where connections go: one pool of idle connections per origin."""

    host: str
    port: int
    tls: bool


class Pool:
    """Idle keep-alive connections per origin (newest first); new ones opened on demand.

    No limit on connections, as aiohttp's `limit=0`: concurrency is bounded by the gateway's
    own limits (`max_requests`, per-upstream `max_parallel`), not by a queue here.
    """

    __slots__ = ("_idle", "_keepalive_s", "_loop", "_ssl", "_sweep", "_sweep_s", "closed")

    def __init__(self, keepalive_s: float = 60.0, tls: ssl.SSLContext | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._keepalive_s = keepalive_s
        self._sweep_s = min(IDLE_SWEEP_S, keepalive_s)
        self._ssl = tls if tls is not None else ssl.create_default_context()  # system CAs
        self._idle: dict[Origin, list[tuple[ResponseHandler, float]]] = {}
        self._sweep: asyncio.TimerHandle | None = None
        self.closed = False

    async def get(self, origin: Origin, connect_s: float | None) -> ResponseHandler:
        """A connected protocol for `origin`: the most recently used idle one, else a new one."""
        idle = self._idle.get(origin)
        if idle:
            oldest = self._loop.time() - self._keepalive_s
            while idle:
                proto, since = idle.pop()
                if since > oldest and proto.is_connected() and not proto.should_close:
                    return proto
                proto.close()
        return await self._connect(origin, connect_s)

    def put(self, origin: Origin, proto: ResponseHandler) -> None:
        """Back to the pool if it can carry another request; closed otherwise."""
        if self.closed or proto.should_close or not proto.is_connected():
            proto.close()
            return
        idle = self._idle.get(origin)
        if idle is None:
            idle = self._idle[origin] = []
        idle.append((proto, self._loop.time()))
        if self._sweep is None:
            self._sweep = self._loop.call_later(self._sweep_s, self._close_stale)

    def idle_count(self) -> int:
        return sum(len(v) for v in self._idle.values())

    def close(self) -> None:
        """Close every idle connection; connections still in use close when released."""
        self.closed = True
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        for idle in self._idle.values():
            for proto, _ in idle:
                proto.close()
        self._idle.clear()

    async def _connect(self, origin: Origin, connect_s: float | None) -> ResponseHandler:
        tls = self._ssl if origin.tls else None
        try:
            async with asyncio.timeout(connect_s):
                _, proto = await self._loop.create_connection(
                    self._factory,
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls is not None else None,  # SNI, checked
                )
        except TimeoutError:  # this deadline's own (a caller's deadline passes through)
            raise ConnectTimeout(f"no connection within {connect_s:g}s") from None
        return proto

    def _factory(self) -> ResponseHandler:
        return ResponseHandler(self._loop)

    def _close_stale(self) -> None:
        self._sweep = None
        oldest = self._loop.time() - self._keepalive_s
        for origin, idle in list(self._idle.items()):
            keep = []
            for proto, since in idle:
                if since > oldest and proto.is_connected():
                    keep.append((proto, since))
                else:
                    proto.close()
            if keep:
                self._idle[origin] = keep
            else:
                del self._idle[origin]
        if self._idle and not self.closed:
            self._sweep = self._loop.call_later(self._sweep_s, self._close_stale)
