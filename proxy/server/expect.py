"""`Expect: 100-continue` on the proxied endpoints: a body that will be refused is not invited."""

from __future__ import annotations

from aiohttp import hdrs, web

from proxy.core.errors import GatewayError
from proxy.server.runtime import Gateway

_UNKNOWN = GatewayError(
    417,
    "Only `Expect: 100-continue` is understood.",
    code="expectation_failed",
    should_retry=False,
)


async def expect_continue(request: web.BaseRequest, gw: Gateway) -> web.StreamResponse | None:
    """Invite the body with "100 Continue" only when it is within `max_body_mb`.

    A larger announced body gets no invitation: the handler then answers 413 from the headers
    alone (with the request id and its access line), before the client sends the body, rather
    than after it uploaded it all.
    """
    if request.version < (1, 1):
        return None  # HTTP/1.0 has no interim answers; the body comes anyway
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        resp = web.Response(status=417, body=_UNKNOWN.body(), headers=_UNKNOWN.headers())
        resp.force_close()
        return resp
    length = request.content_length
    if length is not None and length > gw.store.current.server.max_body_bytes:
        return None
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the interim answer is not part of the response
    return None
