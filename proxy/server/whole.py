"""A whole answer (status, headers, body) written to the client in one call.

The proxied JSON answer is complete before the gateway replies, so aiohttp's response
machinery (a header multidict, the prepare and start hooks, header serialization, the
payload writer's length bookkeeping) is work with nothing left to decide; counted with
callgrind it was a visible share of a proxied request. aiohttp's connection handler only
needs `prepare`, `write_eof`, `keep_alive` and `force_close` from what a handler returns.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import cast

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time

from proxy.transport.wire import header_block

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_JOINED_BELOW = 64 * 1024
"""Smaller bodies are joined to their head (one buffer); larger ones are written beside it."""


class Answer:
    """What aiohttp's connection handler reads from a handler's return value: `prepare`,
    `write_eof` (in the subclasses), `keep_alive` and `force_close`."""

    __slots__ = ("_close", "status")

    def __init__(self, status: int, close: bool) -> None:
        self.status = status
        self._close = close

    def response(self) -> web.StreamResponse:
        """This answer as aiohttp's handler return type."""
        return cast(web.StreamResponse, self)

    @property
    def keep_alive(self) -> bool:
        return not self._close

    def force_close(self) -> None:
        self._close = True


class WholeAnswer(Answer):
    """What a handler returns for a complete answer; aiohttp writes it as it would a Response."""

    __slots__ = ("_body", "_headers", "_sent")

    def __init__(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        super().__init__(status, headers.get("Connection") == "close")
        self._body = body
        self._headers = headers
        self._sent = False

    async def prepare(self, request: web.BaseRequest) -> None:
        if self._sent:
            return
        self._sent = True
        if not request.keep_alive:
            self._close = True
        writer = request.writer
        body = self._body
        head = self._head(request, len(body))
        if len(body) < _JOINED_BELOW:
            await writer.write_eof(head + body)
        else:
            await writer.write(head)
            await writer.write_eof(body)

    async def write_eof(self, data: bytes = b"") -> None:
        """Everything went out in `prepare`."""

    def _head(self, request: web.BaseRequest, length: int) -> bytes:
        version = request.version
        status = self.status
        headers = self._headers
        block = header_block(headers)
        if "Connection" not in headers:
            if self._close and version >= (1, 1):
                block += "Connection: close\r\n"
            elif not self._close and version < (1, 1):
                block += "Connection: keep-alive\r\n"
        return (
            f"HTTP/{version.major}.{version.minor} {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"{block}Content-Length: {length}\r\nDate: {rfc822_formatted_time()}\r\n\r\n"
        ).encode("utf-8", "surrogateescape")  # upstream header bytes as they came


def whole(status: int, body: bytes, headers: dict[str, str]) -> web.StreamResponse:
    """The answer as aiohttp's handler type; statuses that carry no body use aiohttp's own."""
    if status < 200 or status in (204, 304):
        return web.Response(status=status, headers=headers)
    return WholeAnswer(status, body, headers).response()
