"""Why one attempt failed, and what each kind means for failover and for upstream health."""

from __future__ import annotations

from enum import StrEnum


class FailureKind(StrEnum):
    CONNECT = "connect"
    """Could not connect (refused, unreachable, connect timeout): nothing was sent."""
    RESET = "reset"
    """Connection dropped before the response started."""
    TTFB_TIMEOUT = "ttfb_timeout"
    UPSTREAM_5XX = "upstream_5xx"
    RATE_LIMITED = "rate_limited"
    UPSTREAM_AUTH = "upstream_auth"
    """401/403 from the provider: the gateway's credential, never the client's fault."""
    RESPONSE_TOO_LARGE = "response_too_large"
    """A whole answer above `max_response_mb`: refused, not retried (another would be as large)."""
    CLIENT_ERROR = "client_error"
    """A 4xx the client caused: returned as is, never retried elsewhere."""
    STREAM_BROKEN = "stream_broken"
    """The upstream failed after the commit point."""
    IDLE_TIMEOUT = "idle_timeout"
    SHUTDOWN = "shutdown"
    CLIENT_GONE = "client_gone"


FAILOVER = frozenset(
    {
        FailureKind.CONNECT,
        FailureKind.RESET,
        FailureKind.TTFB_TIMEOUT,
        FailureKind.UPSTREAM_5XX,
        FailureKind.RATE_LIMITED,
        FailureKind.UPSTREAM_AUTH,
    }
)
"""Kinds that move on to another upstream when they happen before the commit point."""

PENALIZE = frozenset(
    {
        FailureKind.CONNECT,
        FailureKind.RESET,
        FailureKind.TTFB_TIMEOUT,
        FailureKind.UPSTREAM_5XX,
        FailureKind.UPSTREAM_AUTH,
        FailureKind.STREAM_BROKEN,
        FailureKind.IDLE_TIMEOUT,
    }
)
"""Kinds that count toward ejection. A 429 does not: it is a pause, not ill health."""


def classify_status(status: int) -> FailureKind | None:
    """None for a success; otherwise what an upstream status means for failover."""
    if status < 300:
        return None
    if status < 400:
        # Redirects are never followed (the next hop could be anywhere): a bad gateway.
        return FailureKind.UPSTREAM_5XX
    if status == 429:
        return FailureKind.RATE_LIMITED
    if status in (401, 403):
        return FailureKind.UPSTREAM_AUTH
    if status in (408, 409) or status >= 500:
        # 408/409 are transient by the SDKs' own rules; 5xx (and Anthropic's 529) too.
        return FailureKind.UPSTREAM_5XX
    return FailureKind.CLIENT_ERROR
