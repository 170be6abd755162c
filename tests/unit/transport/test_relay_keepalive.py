"""Tests for proxy.transport.relay keepalives: comments only between events, none when off."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import cast

from aiohttp import web

from proxy.config.values import Timeouts
from proxy.core.exchange import Usage
from proxy.transport.relay import KEEPALIVE, StreamRelay


class ScriptedReply:
    """An upstream stream: each chunk after its pause; b"" ends it."""

    def __init__(self, first: bytes, script: list[tuple[float, bytes]]) -> None:
        self.status = 200
        self.headers: Mapping[str, str] = {}
        self.first = first
        self.ttfb_s = 0.0
        self._script = list(script)

    @property
    def read(self) -> Callable[[], Awaitable[bytes]]:
        return self._next

    async def _next(self) -> bytes:
        if not self._script:
            return b""
        pause, chunk = self._script.pop(0)
        await asyncio.sleep(pause)
        return chunk

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class Passthrough:
    usage: Usage | None = None

    def chunk(self, data: bytes) -> bytes:
        return data

    def end(self) -> bytes:
        return b""


class Out:
    def __init__(self) -> None:
        self.parts: list[bytes] = []

    async def write(self, data: bytes) -> None:
        self.parts.append(bytes(data))

    async def write_eof(self) -> None:
        self.parts.append(b"<eof>")


async def relay(script: list[tuple[float, bytes]], keepalive_s: float | None) -> list[bytes]:
    reply = ScriptedReply(b"data: 1\n\n", script)
    r = StreamRelay(reply, Timeouts(idle_s=5.0), Passthrough(), keepalive_s=keepalive_s)
    out = Out()
    await asyncio.wait_for(r.run(cast(web.StreamResponse, out)), 5)
    return out.parts


async def test_no_comment_inside_an_event_split_across_a_silence() -> None:
    parts = await relay([(0.0, b"event: x\n"), (0.35, b"data: 2\n\n"), (0.35, b"data: 3\n\n")], 0.1)
    body = b"".join(p for p in parts if p != b"<eof>")
    assert KEEPALIVE in body
    # The split event arrives whole: no comment between its event and data lines.
    assert b"event: x\ndata: 2\n\n" in body
    before = parts.index(b"data: 2\n\n")
    assert KEEPALIVE not in parts[:before]
    assert KEEPALIVE in parts[before:]
    assert parts[-1] == b"<eof>"


async def test_off_means_no_comments() -> None:
    parts = await relay([(0.3, b"data: 2\n\n")], None)
    assert KEEPALIVE not in parts
