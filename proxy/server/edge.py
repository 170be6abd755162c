"""Edge limits on client connections: header-read deadline, connection cap (nginx/HAProxy style)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from proxy.core.errors import GatewayError
from proxy.ops import logs
from proxy.server.httperrors import GatewayRequestHandler
from proxy.server.runtime import ConfigStore

if TYPE_CHECKING:
    from proxy.server.app import Dispatch  # app imports the pipeline, which imports this

HEADER_TIMEOUT = GatewayError(
    408,
    "The request headers did not arrive in time ([server] header_timeout_s).",
    code="request_timeout",
    should_retry=False,
)
TOO_MANY_CONNECTIONS = GatewayError(
    503,
    "The gateway has too many open connections; retry shortly.",
    type_="server_error",
    code="too_many_connections",
    retry_after_s=1.0,
)

BODY_TIMEOUT = GatewayError(
    408,
    "The request body stalled ([server] body_timeout_s between chunks).",
    code="request_timeout",
    should_retry=False,
)
TOO_MANY_REQUESTS = GatewayError(
    503,
    "The gateway has too many requests in flight ([server] max_requests); retry shortly.",
    type_="server_error",
    code="too_many_requests",
    retry_after_s=1.0,
)


def raw_response(err: GatewayError) -> bytes:
    """A whole HTTP/1.1 answer written straight to the socket, then the connection closes."""
    body = err.body()
    lines = [f"HTTP/1.1 {err.status} {_REASONS.get(err.status, 'Error')}"]
    lines += [f"{k}: {v}" for k, v in err.headers().items()]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode() + body


_REASONS = {408: "Request Timeout", 503: "Service Unavailable"}


class Edge:
    """Open connections of this process, against `[server] max_connections`."""

    __slots__ = ("connections", "refused", "store", "timed_out")

    def __init__(self, store: ConfigStore) -> None:
        self.store = store
        self.connections = 0
        self.refused = 0
        self.timed_out = 0


class EdgeRequestHandler(GatewayRequestHandler):
    """A connection that must send complete headers within `header_timeout_s` of its first
    byte (or of opening): a client trickling its headers (slowloris) is answered 408 and closed.
    Idle keep-alive connections are governed by `keepalive_timeout_s` instead."""

    edge: Edge
    _header_timer: asyncio.TimerHandle | None = None
    _awaiting_headers = True
    _close_after = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        edge = self.edge
        edge.connections += 1
        server = edge.store.current.server
        if server.max_connections is not None and edge.connections > server.max_connections:
            edge.refused += 1
            self._refuse(TOO_MANY_CONNECTIONS)
            return
        self._arm(server.header_timeout_s)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.edge.connections -= 1
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if not self._awaiting_headers:
            return
        if self._request_count != before:
            self._awaiting_headers = False
            self._disarm()
        elif self._header_timer is None:
            self._arm(self.edge.store.current.server.header_timeout_s)

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        out = await super().finish_response(request, resp, start_time)
        if self._close_after:
            self.force_close()  # the answer is written (the transport flushes it, then closes)
        # The next request's headers are timed from its first byte (idle is keep-alive's job).
        # Not while a pipelined request is queued, nor while this one's body is still coming
        # (an early answer such as a 413): those bytes are body, not headers.
        if not self._messages and request.content.is_eof():
            self._awaiting_headers = True
        return out

    def no_linger(self) -> None:
        """Close once the current answer is written, without reading the rest of the body
        (aiohttp would otherwise wait up to 10 s for a stalled client to send it)."""
        self._close_after = True

    def _arm(self, timeout_s: float) -> None:
        self._disarm()
        self._header_timer = self._loop.call_later(timeout_s, self._headers_late)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._awaiting_headers and self.transport is not None:
            self.edge.timed_out += 1
            logs.warning("header_timeout", remote=_peer(self.transport))
            self._refuse(HEADER_TIMEOUT)

    def _refuse(self, err: GatewayError) -> None:
        transport = self.transport
        if transport is None:
            return
        transport.write(raw_response(err))
        self.force_close()
        transport.close()


def _peer(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


class _EdgeServer(web.Server):
    edge: Edge

    def __call__(self) -> RequestHandler:
        handler = EdgeRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.edge = self.edge
        return handler


class EdgeRunner(web.ServerRunner):
    """The public listener's runner: aiohttp's low-level server (no `Application`) with the
    gateway's connection handler (error answers, edge limits)."""

    def __init__(
        self,
        dispatch: Dispatch,
        edge: Edge,
        *,
        shutdown_timeout: float,
        handler_cancellation: bool,
        **handler_args: Any,
    ) -> None:
        server = _EdgeServer(dispatch, handler_cancellation=handler_cancellation, **handler_args)
        server.edge = edge
        super().__init__(server, shutdown_timeout=shutdown_timeout)
        self.gateway = dispatch.gateway
