"""The access line: one per client request, written from its exchange when it settles."""

from __future__ import annotations

import time
from dataclasses import dataclass

from proxy.core.exchange import Exchange
from proxy.ops import logs

SHOWN_CHARS = 200
"""Client-chosen strings (path, user agent, model) are cut to this length in the line."""


def write(ex: Exchange) -> None:
    """One access line with what the request went through; no header, body or credential.

    A 5xx or a stream ended by an error event is a warning, so a warning filter finds them.
    """
    usage = ex.usage
    ttfb = ex.ttfb_s
    route = ex.route
    peek = ex.peek
    status = ex.status
    line: dict[str, object] = {
        "request_id": ex.id,
        "method": "POST",
        "path": _cut(ex.path),
        "client": ex.client,
        "user_agent": _cut(ex.client_headers.get("User-Agent")),
        "endpoint": ex.endpoint,  # a StrEnum: orjson writes its value
        "model": None if peek is None else _cut(peek.model),
        "stream": ex.stream,
        "route": None if route is None else route.name,
        "arm": ex.arm,
        "status": status,
        "error": ex.error_code,
        "upstream": ex.upstream,
        "attempts": ex.attempts,
        "hedge": ex.hedge,
        "cache": ex.cache,
        "failure": ex.failure,
        "ttfb_ms": None if ttfb is None else round(ttfb * 1000, 2),
        "duration_ms": round((time.monotonic() - ex.started) * 1000, 2),
        "tokens_in": None if usage is None else usage.tokens_in,
        "tokens_out": None if usage is None else usage.tokens_out,
        "key": ex.key_name,
        "team": ex.team,
        "cost_usd": ex.cost_usd,
    }
    if usage is not None and (usage.tokens_cached or usage.tokens_cache_write):
        line["tokens_cache_read"] = usage.tokens_cached  # both part of tokens_in
        line["tokens_cache_write"] = usage.tokens_cache_write
    logs.access(line, warning=status >= 500 or (status == 200 and ex.error_code is not None))


@dataclass(frozen=True, slots=True)
class PlainAnswer:
    """An answer the gateway makes itself (the model list, 404, 405), for its access line."""

    request_id: str
    method: str
    path: str
    client: str | None
    user_agent: str | None
    endpoint: str | None
    status: int
    error_code: str | None
    started: float
    """Monotonic seconds at arrival."""


def write_plain(a: PlainAnswer) -> None:
    """The access line of an answer the gateway makes itself."""
    logs.access(
        {
            "request_id": a.request_id,
            "method": a.method,
            "path": _cut(a.path),
            "client": a.client,
            "user_agent": _cut(a.user_agent),
            "endpoint": a.endpoint,
            "status": a.status,
            "error": a.error_code,
            "duration_ms": round((time.monotonic() - a.started) * 1000, 2),
        },
        warning=a.status >= 500,
    )


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= SHOWN_CHARS:
        return text
    return text[:SHOWN_CHARS] + "..."
