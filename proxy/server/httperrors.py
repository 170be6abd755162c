"""Requests aiohttp's HTTP parser rejects: answered OpenAI-shaped, logged as one JSON event."""

from __future__ import annotations

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler

from proxy.core.errors import GatewayError
from proxy.ops import logs

_TOO_MANY_HEADERS = "Too many headers"


def parser_error(status: int, exc: BaseException | None) -> GatewayError:
    """The gateway's answer for what the parser refused; never quotes the client's bytes.

    aiohttp's own text quotes part of the offending input (a header value, the URL), which
    a gateway must not echo back (it may be a credential, and it is attacker-chosen).
    """
    if isinstance(exc, LineTooLong) or (
        isinstance(exc, BadHttpMessage) and _TOO_MANY_HEADERS in exc.message
    ):
        return GatewayError(
            431,
            "The request line or headers are too large (too long or too many).",
            code="request_header_too_large",
            should_retry=False,
        )
    if isinstance(exc, BadHttpMessage) or status == 400:
        return GatewayError(
            400,
            "The request is not valid HTTP/1.1 (framing, headers or request line).",
            code="invalid_http_request",
            should_retry=False,
        )
    if status == 504:
        return GatewayError(504, "The request took too long.", type_="server_error", code="timeout")
    return GatewayError(500, "Internal gateway error.", type_="server_error", code="internal_error")


class GatewayRequestHandler(RequestHandler):
    """aiohttp's connection handler with the gateway's error answer and log event."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        err = parser_error(status, exc)
        logs.warning(
            "http_request_rejected",
            status=err.status,
            code=err.code,
            error=type(exc).__name__ if exc is not None else None,
            remote=request.remote,
        )
        if request.writer.output_size > 0:
            # Part of a response went out already: the connection is broken, say nothing more.
            raise ConnectionError("response already started")
        resp = web.Response(status=err.status, body=err.body(), headers=err.headers())
        resp.force_close()
        return resp


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections use `GatewayRequestHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # same object and state, only the handler class differs
        return server
