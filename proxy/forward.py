"""One attempt: send the request to one upstream and wait for the start of its answer."""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from proxy.config import Member, Timeouts
from proxy.errors import FailureKind, classify_status

ERROR_BODY_LIMIT = 256 * 1024
"""Upstream error bodies are read up to this size (they are small JSON)."""


@dataclass(slots=True)
class Opened:
    """An attempt that reached its start: headers and the first bytes (stream) or whole body."""

    response: aiohttp.ClientResponse
    first: bytes
    ttfb_s: float
    failure: FailureKind | None
    """Set when the status itself is a failure (5xx, 429, 401...); `first` holds the error body."""


class AttemptFailed(Exception):
    """The attempt failed before any response started (nothing reached the client)."""

    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@functools.lru_cache(maxsize=1024)
def client_timeout(t: Timeouts) -> aiohttp.ClientTimeout:
    """aiohttp's own timeouts for an attempt: only the socket connect; the rest is ours."""
    return aiohttp.ClientTimeout(total=None, connect=None, sock_connect=t.connect_s)


@functools.lru_cache(maxsize=4096)
def upstream_url(url: str) -> URL:
    """Parsed once per distinct URL: parsing a URL string is a visible cost per request."""
    return URL(url)


async def open_attempt(
    session: aiohttp.ClientSession,
    member: Member,
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    stream: bool,
) -> Opened:
    """Send and wait, within the TTFB deadline, for the headers and the first body bytes.

    For a stream the first chunk is read too, so a stream that dies before its first byte
    can still fail over; a non-streaming body is read whole (idle deadline per read).
    """
    t = member.timeouts
    started = time.monotonic()
    resp: aiohttp.ClientResponse | None = None
    try:
        async with asyncio.timeout(t.ttfb_s) as deadline:
            resp = await session.post(
                upstream_url(url),
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=client_timeout(t),
            )
            failure = classify_status(resp.status)
            if failure is None and stream:
                first = await resp.content.readany()
                if not first:
                    raise AttemptFailed(FailureKind.RESET, "empty stream")
                return Opened(resp, first, time.monotonic() - started, None)
            ttfb_s = time.monotonic() - started
            # One deadline object for the whole attempt: the body gets the idle allowance.
            deadline.reschedule(asyncio.get_running_loop().time() + t.idle_s)
            if failure is not None:
                first = await resp.content.read(ERROR_BODY_LIMIT)
            else:
                first = await resp.read()
        return Opened(resp, first, ttfb_s, failure)
    except AttemptFailed:
        _discard(resp)
        raise
    except TimeoutError:
        _discard(resp)
        if resp is None or time.monotonic() - started >= t.ttfb_s:
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


def _discard(resp: aiohttp.ClientResponse | None) -> None:
    if resp is not None:
        resp.close()


def _describe(exc: BaseException) -> str:
    """A short failure description that names the error class, never request headers."""
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
