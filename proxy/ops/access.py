"""The access line: one per client request, written from its exchange when it settles."""

from __future__ import annotations

import time

from proxy.core.exchange import Exchange
from proxy.ops import logs


def write(ex: Exchange) -> None:
    """One access line with what the request went through; no header, body or credential."""
    usage = ex.usage
    ttfb = ex.ttfb_s
    route = ex.route
    logs.access(
        {
            "request_id": ex.id,
            "endpoint": ex.endpoint.value,
            "stream": ex.stream,
            "route": None if route is None else route.name,
            "status": ex.status,
            "upstream": ex.upstream,
            "attempts": ex.attempts,
            "failure": ex.failure,
            "ttfb_ms": None if ttfb is None else round(ttfb * 1000, 2),
            "duration_ms": round((time.monotonic() - ex.started) * 1000, 2),
            "tokens_in": None if usage is None else usage.tokens_in,
            "tokens_out": None if usage is None else usage.tokens_out,
            "key": ex.key_name,
            "team": ex.team,
            "cost_usd": ex.cost_usd,
        }
    )
