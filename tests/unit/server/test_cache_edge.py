"""The cache's request-side decisions: what the client's headers allow, and who shares."""

from __future__ import annotations

from typing import cast

import pytest
from aiohttp import web

from proxy.cache.lru import Entry
from proxy.cache.store import MemoryStore
from proxy.config.caching import RouteCache
from proxy.config.compiler import compile_text
from proxy.config.values import Endpoint
from proxy.core.exchange import Exchange, Peek
from proxy.server.caching import (
    ResponseCache,
    Tap,
    Ticket,
    _cacheable,
    _scope,
    _wanted,
    as_body,
    as_stream,
)

SNAP = compile_text(
    '[upstreams.a]\nbase_url = "http://127.0.0.1:9/v1"\n[routes.r]\ntiers = [{ a = 1 }]\n'
)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, (True, True)),
        ({"Cache-Control": "no-cache"}, (False, True)),
        ({"Cache-Control": "max-age=0, No-Cache"}, (False, True)),
        ({"Cache-Control": "no-store"}, (False, False)),
        ({"Cache-Control": "no-cache, no-store"}, (False, False)),
        ({"x-gateway-cache": "skip"}, (False, False)),
        ({"x-gateway-cache": " SKIP "}, (False, False)),
        ({"x-gateway-cache": "hit"}, (True, True)),
        ({"Cache-Control": "max-age=60"}, (True, True)),
    ],
)
def test_client_headers(headers: dict[str, str], expected: tuple[bool, bool]) -> None:
    assert _wanted(headers) == expected


def exchange(
    endpoint: Endpoint = Endpoint.CHAT, stream: bool = False, **who: str | None
) -> Exchange:
    ex = Exchange(id="r", endpoint=endpoint, snap=SNAP, started=0.0, client_headers={})
    ex.peek = Peek(model="r", stream=stream, include_usage=False, has_stream_options=False)
    ex.body = b'{"model": "r", "messages": [{"role": "user", "content": "hi"}]}'
    ex.key_name = who.get("key")
    ex.team = who.get("team")
    return ex


def test_scopes() -> None:
    team, key, wide = (RouteCache(scope=s) for s in ("team", "key", "global"))
    assert _scope(team, exchange(key="k1", team="red")) == "team:red"
    assert _scope(team, exchange(key="k1")) == "key:k1"
    assert _scope(key, exchange(key="k1", team="red")) == "key:k1"
    assert _scope(wide, exchange(key="k1", team="red")) == "*"
    assert _scope(team, exchange(key="red")) != _scope(team, exchange(key="x", team="red"))


def test_what_is_cacheable() -> None:
    assert _cacheable(exchange(stream=True))
    assert _cacheable(exchange(Endpoint.EMBEDDINGS))
    assert not _cacheable(exchange(Endpoint.COMPLETIONS, stream=True))
    assert not _cacheable(exchange(Endpoint.MESSAGES))
    assert not _cacheable(exchange(Endpoint.RESPONSES))


class Out:
    """Stands in for the client's StreamResponse: what was written, in its cut."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.ended = False

    async def write(self, data: bytes) -> None:
        self.writes.append(data)

    async def write_eof(self, data: bytes = b"") -> None:
        self.ended = True


STREAM = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}\n\n',
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]}\n\ndata: {"id":"c",',
    b'"object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
)


async def record(chunks: tuple[bytes, ...], stream: bool = True) -> tuple[ResponseCache, Exchange]:
    cache = ResponseCache(MemoryStore(1 << 20, 1 << 20))
    ex = exchange(stream=stream)
    ex.route = SNAP.routes["r"]
    rc = RouteCache(ttl_s=60)
    found, _ = await cache.find(ex, rc)
    assert found is None and ex.cache == "miss"
    ticket = cast(Ticket, ex.cache_ticket)
    ticket.streaming()
    out = Out()
    tap = Tap(cast(web.StreamResponse, out), ticket)
    for c in chunks:
        await tap.write(c)
    await tap.write_eof()
    assert out.writes == list(chunks) and out.ended
    ex.status = 200
    cache.land(ex)
    return cache, ex


async def test_a_recorded_stream_replays_byte_for_byte_in_its_cut() -> None:
    cache, _ = await record(STREAM)
    again = exchange(stream=True)
    again.route = SNAP.routes["r"]
    entry, _ = await cache.find(again, RouteCache(ttl_s=60))
    assert isinstance(entry, Entry) and again.cache == "hit"
    assert as_stream(again, entry) == STREAM
    body = as_body(entry)
    assert body is not None
    assert b'"content":"Hello"' in body


async def test_a_cut_stream_is_not_stored() -> None:
    cache, _ = await record(STREAM[:-1])
    again = exchange(stream=True)
    again.route = SNAP.routes["r"]
    found, _ = await cache.find(again, RouteCache(ttl_s=60))
    assert found is None and again.cache == "miss"
