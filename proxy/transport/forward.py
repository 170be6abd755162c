"""The aiohttp side of the transport seam: send one attempt, wait for the start of its answer."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from yarl import URL

from proxy.config.values import Timeouts
from proxy.core.failures import FailureKind
from proxy.providers.base import Progress, UpstreamRequest
from proxy.routing.send import AttemptFailed
from proxy.transport.bodies import upstream_body
from proxy.transport.relay import answered_whole

ERROR_BODY_LIMIT = 256 * 1024
"""Upstream error bodies are read up to this size (they are small JSON)."""
COMMENT_LIMIT = 1 << 20
"""Bytes of comments a stream may send before its first data event (held until it comes)."""


class HTTPReply:
    """An aiohttp response that has started, as the routing seam sees it."""

    __slots__ = ("_response", "first", "headers", "read", "status", "ttfb_s")

    def __init__(self, response: aiohttp.ClientResponse, first: bytes, ttfb_s: float) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self.first = first
        self.ttfb_s = ttfb_s
        self.read: Callable[[], Awaitable[bytes]] = response.content.readany

    def release(self) -> None:
        self._response.release()

    def close(self) -> None:
        self._response.close()


@functools.lru_cache(maxsize=1024)
def client_timeout(t: Timeouts) -> aiohttp.ClientTimeout:
    """aiohttp's own timeouts for an attempt: only the socket connect; the rest is ours."""
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=t.connect_s)


@functools.lru_cache(maxsize=4096)
def upstream_url(url: str) -> URL:
    """Parsed once per distinct URL: parsing a URL string is a visible cost per request."""
    return URL(url)


def new_session() -> aiohttp.ClientSession:
    """One pooled, keep-alive client for every upstream; no proxies from the environment."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=60)
    return aiohttp.ClientSession(
        connector=connector,
        auto_decompress=False,
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


class HTTPSender:
    """The production `Send`: one pooled aiohttp session for every upstream."""

    __slots__ = ("session",)

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

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
        resp: aiohttp.ClientResponse | None = None
        body_phase = False
        try:
            async with asyncio.timeout(t.ttfb_s) as deadline:
                resp = await self.session.post(
                    upstream_url(request.url),
                    data=upstream_body(request.body),
                    headers=request.headers,
                    allow_redirects=False,
                    timeout=client_timeout(t),
                )
                ok = resp.status < 300
                if ok and stream and not answered_whole(resp.headers):
                    first = await _first_data(resp, request.progress)
                    return HTTPReply(resp, first, time.monotonic() - started)
                ttfb_s = time.monotonic() - started
                # One deadline object for the whole attempt: the body gets the idle allowance.
                deadline.reschedule(asyncio.get_running_loop().time() + t.idle_s)
                body_phase = True
                if ok:
                    first = await _whole(resp, request.max_response_bytes)
                else:
                    first = await resp.content.read(ERROR_BODY_LIMIT)
            return HTTPReply(resp, first, ttfb_s)
        except AttemptFailed:
            _discard(resp)
            raise
        except TimeoutError:
            _discard(resp)
            # Which deadline fired is known by phase, not by comparing clocks (the loop's clock
            # steps in milliseconds under uvloop, so it can fire "early" by time.monotonic).
            if not body_phase:
                raise AttemptFailed(
                    FailureKind.TTFB_TIMEOUT, f"no answer within {t.ttfb_s:g}s"
                ) from None
            raise AttemptFailed(FailureKind.RESET, f"body stalled for {t.idle_s:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise AttemptFailed(FailureKind.CONNECT, _describe(exc)) from None
        except aiohttp.ConnectionTimeoutError:
            raise AttemptFailed(FailureKind.CONNECT, f"connect timeout {t.connect_s:g}s") from None
        except (aiohttp.ClientError, OSError) as exc:
            _discard(resp)
            raise AttemptFailed(FailureKind.RESET, _describe(exc)) from None
        except BaseException:
            _discard(resp)
            raise


async def _first_data(resp: aiohttp.ClientResponse, progress: Progress | None) -> bytes:
    """The stream's bytes up to and including its first data event (the commit point waits
    for data: an upstream that only sends `: keepalive` comments must still fail over)."""
    first = await resp.content.readany()
    if not first:
        raise AttemptFailed(FailureKind.RESET, "empty stream")
    if progress is None or progress.feed(first):
        return first
    parts = [first]
    size = len(first)
    while True:
        chunk = await resp.content.readany()
        if not chunk:
            raise AttemptFailed(FailureKind.RESET, "stream ended before its first data event")
        parts.append(chunk)
        size += len(chunk)
        if progress.feed(chunk):
            return b"".join(parts)
        if size > COMMENT_LIMIT:
            raise AttemptFailed(FailureKind.RESET, "stream sent only comments")


async def _whole(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """A whole successful answer, refused as soon as it is known to pass `limit` bytes."""
    length = resp.content_length
    if length is not None:
        if length > limit:
            raise AttemptFailed(FailureKind.RESPONSE_TOO_LARGE, f"{length} bytes announced")
        return await resp.read()  # bounded by its Content-Length: aiohttp's own fast path
    parts: list[bytes] = []
    size = 0
    while chunk := await resp.content.readany():
        size += len(chunk)
        if size > limit:
            raise AttemptFailed(FailureKind.RESPONSE_TOO_LARGE, f"more than {limit} bytes")
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _discard(resp: aiohttp.ClientResponse | None) -> None:
    if resp is not None:
        resp.close()


def _describe(exc: BaseException) -> str:
    """A short failure description that names the error class, never request headers."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
