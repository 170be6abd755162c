"""The gateway's own answers (model list, probes, 404/405): a request id on each, and an access
line for those worth one (not the load balancer's probes)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.core.errors import GatewayError
from proxy.ops.access import PlainAnswer, write_plain
from proxy.server.runtime import Gateway
from proxy.transport.headers import valid_request_id

ERROR_CODE = web.ResponseKey("error_code", str)
"""The `code` of an error answer, kept on the response for the access line."""

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
OwnHandler = Callable[[web.BaseRequest, Gateway], Awaitable[web.StreamResponse]]


def error_response(err: GatewayError, **headers: str) -> web.Response:
    """An OpenAI-shaped error, with its `code` kept on the response for the access line."""
    all_headers = err.headers()
    all_headers.update(headers)
    resp = web.Response(status=err.status, body=err.body(), headers=all_headers)
    if err.code is not None:
        resp[ERROR_CODE] = err.code
    return resp


def own(handler: OwnHandler, gw: Gateway, endpoint: str | None, *, logged: bool = True) -> Handler:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        started = time.monotonic()
        rid = request.headers.get("x-request-id")
        if rid is None or not valid_request_id(rid):
            rid = gw.new_request_id()
        try:
            resp = await handler(request, gw)
        except GatewayError as err:
            resp = error_response(err)
        resp.headers["x-request-id"] = rid
        if gw.drain.draining:
            resp.headers["Connection"] = "close"
        if logged and gw.store.current.server.access_log:
            write_plain(
                PlainAnswer(
                    request_id=rid,
                    method=request.method,
                    path=request.path,
                    client=request.remote,
                    user_agent=request.headers.get("User-Agent"),
                    endpoint=endpoint,
                    status=resp.status,
                    error_code=resp.get(ERROR_CODE),
                    started=started,
                )
            )
        return resp

    return handle
