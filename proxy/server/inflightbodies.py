"""The global bound on request-body memory: bytes held by all requests in flight together."""

from __future__ import annotations

from proxy.core.errors import GatewayError

SMALL_BODY = 1 << 20
"""Bodies up to this size are counted but never refused: the bound is for the large ones."""
RETRY_AFTER_S = 1.0

_FULL = GatewayError(
    503,
    "The gateway is holding as many large request bodies as it may; retry shortly.",
    type_="server_error",
    code="server_overloaded",
    retry_after_s=RETRY_AFTER_S,
)


class InflightBodies:
    """Counts body bytes held by requests in flight; `[server] max_inflight_body_mb` bounds it.

    Beyond the bound a new large body is refused with a 503 and Retry-After, before it is read
    (when its Content-Length says so) or as soon as it passes the bound (chunked), instead of
    the process growing until the OOM killer ends every stream at once.
    """

    __slots__ = ("held", "refused")

    def __init__(self) -> None:
        self.held = 0
        self.refused = 0

    def claim(self, limit: int) -> BodyClaim:
        return BodyClaim(self, limit)


class BodyClaim:
    """The bytes one request holds; released once, when the request ends."""

    __slots__ = ("_limit", "_pool", "size")

    def __init__(self, pool: InflightBodies, limit: int) -> None:
        self._pool = pool
        self._limit = limit
        self.size = 0

    def grow(self, n: int) -> None:
        """Hold `n` more bytes, or raise the 503 if this large body does not fit."""
        pool = self._pool
        if self.size + n > SMALL_BODY and pool.held + n > self._limit:
            pool.refused += 1
            raise _FULL
        pool.held += n
        self.size += n

    def release(self) -> None:
        self._pool.held -= self.size
        self.size = 0
