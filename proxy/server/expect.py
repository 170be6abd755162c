"""`Expect: 100-continue` on the proxied endpoints: a body that will be refused is refused first."""

from __future__ import annotations

from aiohttp import hdrs, web

from proxy.core.errors import GatewayError, too_large
from proxy.server.runtime import GATEWAY

_UNKNOWN = GatewayError(
    417,
    "Only `Expect: 100-continue` is understood.",
    code="expectation_failed",
    should_retry=False,
)


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """Answer 413 before the client sends a body above `max_body_mb` (rather than inviting it
    with "100 Continue" and refusing it after); otherwise invite the body, as aiohttp would."""
    if request.version < (1, 1):
        return None  # HTTP/1.0 has no interim answers; the body comes anyway
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        return _refuse(_UNKNOWN)
    length = request.content_length
    limit = request.app[GATEWAY].store.current.server.max_body_bytes
    if length is not None and length > limit:
        return _refuse(too_large(limit))
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the interim answer is not part of the response
    return None


def _refuse(err: GatewayError) -> web.Response:
    resp = web.Response(status=err.status, body=err.body(), headers=err.headers())
    # The client holds its body back; the connection cannot carry another request after it.
    resp.force_close()
    return resp
