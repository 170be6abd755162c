"""A relayed stream's answer, written straight to aiohttp's payload writer (chunked).

`web.StreamResponse` adds, per stream, a header multidict and its prepare hooks, and per
chunk one more coroutine around the payload writer's own `write`; the relay needs neither.
The payload writer keeps what matters: chunked framing, its byte counters (aiohttp's error
handler looks at them), flow control, and ConnectionError once the client has gone.
"""

from __future__ import annotations

from typing import cast

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from multidict import CIMultiDict

from proxy.server.whole import Answer


class StreamAnswer(Answer):
    """The client side of a relayed stream: `start` is the commit point; then `write` and
    `write_eof` (the relay's sink); aiohttp's connection handler finishes it like a response."""

    __slots__ = ("_headers", "_status_line", "_writer")

    def __init__(self, request: web.BaseRequest, headers: dict[str, str]) -> None:
        super().__init__(200, headers.get("Connection") == "close" or not request.keep_alive)
        self._headers = headers
        self._writer = request.writer
        if request.version < (1, 1):  # no chunked framing: the body ends when the connection does
            self._close = True
        else:
            self._writer.enable_chunking()
            headers["Transfer-Encoding"] = "chunked"
        if "Connection" not in headers and self._close and request.version >= (1, 1):
            headers["Connection"] = "close"
        headers["Date"] = rfc822_formatted_time()
        self._status_line = f"HTTP/{request.version.major}.{request.version.minor} 200 OK"

    async def start(self) -> None:
        """Send the status line and headers now: the client sees the stream begin."""
        writer = self._writer
        # The serializer iterates items() and refuses control characters in any name or value.
        headers = cast("CIMultiDict[str]", self._headers)
        await writer.write_headers(self._status_line, headers)
        writer.send_headers()

    async def write(self, data: bytes) -> None:
        await self._writer.write(data)

    async def write_eof(self, data: bytes = b"") -> None:
        await self._writer.write_eof(data)  # once; aiohttp's own call after the relay is a no-op

    async def prepare(self, request: web.BaseRequest) -> None:
        """Started by the relay already."""
