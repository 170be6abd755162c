"""The cache's request-side decisions: what the client's headers allow, and who shares."""

from __future__ import annotations

import pytest

from proxy.config.caching import RouteCache
from proxy.config.compiler import compile_text
from proxy.config.values import Endpoint
from proxy.core.exchange import Exchange, Peek
from proxy.server.caching import _cacheable, _scope, _wanted

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
