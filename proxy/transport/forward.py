"""The transport seam's production side: send one attempt, wait for the start of its answer.

Requests go out on connections from `proxy.transport.pool` (aiohttp's response protocol and
C parser without `ClientSession`); health checks and other occasional calls keep a session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.http import RawResponseMessage
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.streams import StreamReader

from proxy.config.values import Timeouts
from proxy.core.failures import FailureKind
from proxy.core.spliced import Spliced
from proxy.providers.base import Progress, UpstreamRequest
from proxy.routing.send import AttemptFailed
from proxy.transport.pool import ConnectTimeout, Origin, Pool
from proxy.transport.relay import answered_whole
from proxy.transport.wire import BadTarget, Target, request_head, target

ERROR_BODY_LIMIT = 256 * 1024
"""Upstream error bodies are read up to this size (they are small JSON)."""
COMMENT_LIMIT = 1 << 20
"""Bytes of comments a stream may send before its first data event (held until it comes)."""
SLICED_ABOVE = 1 << 20
"""Bodies larger than this are written in SLICE-sized views with flow control."""
SLICE = 1 << 20
"""A MiB per write: 64 KiB slices cost a loop round trip (pause, drain) each."""
MAX_LINE = 8190
"""Longest status line an upstream may send (aiohttp's default)."""
MAX_FIELD = 65536
"""Longest response header an upstream may send."""


def new_session() -> aiohttp.ClientSession:
    """A pooled keep-alive session for health checks; no proxies from the environment."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class HTTPReply:
    """An upstream answer that has started, as the routing seam sees it."""

    __slots__ = (
        "_origin",
        "_payload",
        "_pool",
        "_proto",
        "first",
        "headers",
        "read",
        "status",
        "ttfb_s",
    )

    def __init__(
        self,
        pool: Pool,
        origin: Origin,
        proto: ResponseHandler,
        message: RawResponseMessage,
        payload: StreamReader,
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._proto: ResponseHandler | None = proto
        self._payload = payload
        self.status = message.code
        self.headers: Mapping[str, str] = message.headers
        self.first = b""
        self.ttfb_s = 0.0
        self.read: Callable[[], Awaitable[bytes]] = payload.readany

    def release(self) -> None:
        """Done: the connection goes back to the pool if its answer was read to the end."""
        if not self._payload.is_eof():
            self.close()
            return
        proto, self._proto = self._proto, None
        if proto is not None:
            self._pool.put(self._origin, proto)

    def close(self) -> None:
        """Abandon the answer: the connection closes (the upstream stops generating) and a
        pending read of the rest fails at once."""
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.close()
            payload = self._payload
            if not payload.is_eof() and payload.exception() is None:
                payload.set_exception(aiohttp.ClientConnectionError("connection closed"))


class HTTPSender:
    """The production `Send`: keep-alive connections from one pool for every upstream."""

    __slots__ = ("pool",)

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def __call__(
        self, request: UpstreamRequest, timeouts: Timeouts, *, stream: bool
    ) -> HTTPReply:
        """Send and wait, within the TTFB deadline, for the headers and the first body bytes.

        For a stream the bytes up to its first data event are read too, so a stream that dies
        (or only sends comments) before its first data can still fail over; a non-streaming body
        (or a stream request answered with a non-SSE body) is read whole within the idle
        deadline and `max_response_bytes`, an error body up to ERROR_BODY_LIMIT.
        """
        t = timeouts
        started = time.monotonic()
        reply: HTTPReply | None = None
        phase = _CONNECT
        try:
            async with asyncio.timeout(t.ttfb_s) as deadline:
                dest = target(request.url)
                proto = await self.pool.get(dest.origin, t.connect_s)
                phase = _SEND
                reply = await _exchange(self.pool, dest, proto, request)
                ok = reply.status < 300
                if ok and stream and not answered_whole(reply.headers):
                    reply.first = await _first_data(reply._payload, request.progress)
                    reply.ttfb_s = time.monotonic() - started
                    return reply
                reply.ttfb_s = time.monotonic() - started
                if not reply._payload.is_eof():  # a small answer is whole by now: no timer moves
                    # One deadline object for the whole attempt: the body gets the idle allowance.
                    deadline.reschedule(asyncio.get_running_loop().time() + t.idle_s)
                phase = _BODY
                if ok:
                    reply.first = await _whole(reply, request.max_response_bytes)
                else:
                    reply.first = await reply._payload.read(ERROR_BODY_LIMIT)
            return reply
        except AttemptFailed:
            _discard(reply)
            raise
        except ConnectTimeout:
            raise AttemptFailed(FailureKind.CONNECT, f"connect timeout {t.connect_s:g}s") from None
        except TimeoutError:
            _discard(reply)
            # Which deadline fired is known by phase, not by comparing clocks (the loop's clock
            # steps in milliseconds under uvloop, so it can fire "early" by time.monotonic).
            if phase != _BODY:
                raise AttemptFailed(
                    FailureKind.TTFB_TIMEOUT, f"no answer within {t.ttfb_s:g}s"
                ) from None
            raise AttemptFailed(FailureKind.RESET, f"body stalled for {t.idle_s:g}s") from None
        except (aiohttp.ClientError, HttpProcessingError, OSError, BadTarget) as exc:
            _discard(reply)
            kind = FailureKind.CONNECT if phase == _CONNECT else FailureKind.RESET
            raise AttemptFailed(kind, _describe(exc)) from None
        except BaseException:
            _discard(reply)
            raise


_CONNECT, _SEND, _BODY = range(3)


async def _exchange(
    pool: Pool, dest: Target, proto: ResponseHandler, request: UpstreamRequest
) -> HTTPReply:
    """Write the request on `proto` and wait for the final (non-1xx) response head."""
    try:
        body = request.body
        head = request_head(dest, request.headers, len(body))
        parts = body.parts if isinstance(body, Spliced) else (body,)
        if proto._parser is None:  # a new connection; the parser carries on across answers
            proto.set_response_params(
                read_until_eof=True,  # a body with neither length nor chunking ends at close
                auto_decompress=False,
                max_line_size=MAX_LINE,
                max_field_size=MAX_FIELD,
            )
        transport = proto.transport
        if transport is None:
            raise aiohttp.ServerDisconnectedError()
        if len(body) <= SLICED_ABOVE:
            transport.writelines((head, *parts))
        else:
            transport.write(head)
            for part in parts:
                await _write_sliced(proto, transport, part)
        while True:
            message, payload = await proto.read()
            if not 100 <= message.code < 200:
                return HTTPReply(pool, dest.origin, proto, message, payload)
    except BaseException:
        proto.close()
        raise


async def _write_sliced(
    proto: ResponseHandler, transport: asyncio.Transport, body: bytes | memoryview
) -> None:
    """A large body in slices of the one buffer it was read into: no copy, flow control per
    slice (the transport would otherwise buffer a copy of tens of MB)."""
    with memoryview(body) as view:
        for at in range(0, len(view), SLICE):
            if transport.is_closing():
                return  # an upstream that answered early and closed: its answer is read next
            transport.write(view[at : at + SLICE])
            if proto.writing_paused:
                try:
                    await proto._drain_helper()
                except ConnectionError:
                    return  # the same: an early answer (a 413) is still in the queue


async def _first_data(payload: StreamReader, progress: Progress | None) -> bytes:
    """The stream's bytes up to and including its first data event (the commit point waits
    for data: an upstream that only sends `: keepalive` comments must still fail over)."""
    first = await payload.readany()
    if not first:
        raise AttemptFailed(FailureKind.RESET, "empty stream")
    if progress is None or progress.feed(first):
        return first
    parts = [first]
    size = len(first)
    while True:
        chunk = await payload.readany()
        if not chunk:
            raise AttemptFailed(FailureKind.RESET, "stream ended before its first data event")
        parts.append(chunk)
        size += len(chunk)
        if progress.feed(chunk):
            return b"".join(parts)
        if size > COMMENT_LIMIT:
            raise AttemptFailed(FailureKind.RESET, "stream sent only comments")


async def _whole(reply: HTTPReply, limit: int) -> bytes:
    """A whole successful answer, refused as soon as it is known to pass `limit` bytes."""
    payload = reply._payload
    announced = reply.headers.get("Content-Length")
    if announced is not None and announced.isdigit():
        if int(announced) > limit:
            raise AttemptFailed(FailureKind.RESPONSE_TOO_LARGE, f"{announced} bytes announced")
        return await payload.read()  # bounded by its Content-Length
    parts: list[bytes] = []
    size = 0
    while chunk := await payload.readany():
        size += len(chunk)
        if size > limit:
            raise AttemptFailed(FailureKind.RESPONSE_TOO_LARGE, f"more than {limit} bytes")
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _discard(reply: HTTPReply | None) -> None:
    if reply is not None:
        reply.close()


def _describe(exc: BaseException) -> str:
    """A short failure description that names the error class, never request headers."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
