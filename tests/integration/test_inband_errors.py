"""Streams answered 200 that fail in-band before their first content fail over to the next tier."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, upstream

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider

BOUND = aiohttp.ClientTimeout(total=10)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-inband")


def claude(fake: FakeProvider) -> dict[str, object]:
    return {
        "provider": "anthropic",
        "base_url": fake.base_url + "/v1",
        "credential": "env:ANTHROPIC_TEST_KEY",
        "model": f"{fake.name}-model",
    }


async def post(url: str, path: str, body: object) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession(timeout=BOUND) as s,
        s.post(url + path, data=orjson.dumps(body), headers={"x-api-key": "k"}) as r,
    ):
        return r.status, await r.read()


MESSAGES = {
    "model": "claude",
    "max_tokens": 64,
    "stream": True,
    "messages": [{"role": "user", "content": "hi"}],
}


@pytest.mark.parametrize("kind", ["overloaded_error", "api_error"])
async def test_messages_stream_failing_before_content_moves_to_next_tier(
    fakes: FakeFactory, gateway: GatewayFactory, kind: str
) -> None:
    first = await fakes("first", dialect="anthropic", default=Behaviour(stream_error=kind))
    second = await fakes("second", dialect="anthropic", default=Behaviour(text="fine", chunks=2))
    gw = await gateway(
        base_config(
            {"a": claude(first), "b": claude(second)},
            {"claude": {"tiers": [{"a": 1}, {"b": 1}]}},
        )
    )
    status, body = await post(gw.url, "/v1/messages", MESSAGES)
    assert status == 200
    assert len(first.requests) == 1 and len(second.requests) == 1
    # One clean stream, from the second tier only: one message_start, no error, a stop.
    assert body.count(b"event: message_start") == 1
    assert b"event: error" not in body and kind.encode() not in body
    assert b"second-model" in body and b"first-model" not in body
    assert body.rstrip().endswith(b'{"type":"message_stop"}')
    assert gw.stats("a").failures == 1


async def test_chat_client_over_messages_upstream_fails_over_too(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    first = await fakes("first", dialect="anthropic", default=Behaviour(stream_error="api_error"))
    second = await fakes("second", default=Behaviour(text="ok", chunks=2))
    gw = await gateway(
        base_config(
            {"a": claude(first), "b": upstream(second)},
            {"chat": {"tiers": [{"a": 1}, {"b": 1}]}},
        )
    )
    chat = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    status, body = await post(gw.url, "/v1/chat/completions", chat)
    assert status == 200
    assert b'"error"' not in body
    assert body.endswith(b"data: [DONE]\n\n")
    assert len(first.requests) == 1 and len(second.requests) == 1


async def test_openai_stream_opening_with_an_error_object_fails_over(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    first = await fakes("first", default=Behaviour(stream_error="overloaded_error"))
    second = await fakes("second", default=Behaviour(text="ok", chunks=2))
    gw = await gateway(
        base_config(
            {"a": upstream(first), "b": upstream(second)},
            {"chat": {"tiers": [{"a": 1}, {"b": 1}]}},
        )
    )
    chat = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    status, body = await post(gw.url, "/v1/chat/completions", chat)
    assert status == 200
    assert b'"error"' not in body and body.endswith(b"data: [DONE]\n\n")
    assert len(second.requests) == 1


async def test_every_tier_failing_in_band_gives_a_shaped_error(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    only = await fakes(
        "only", dialect="anthropic", default=Behaviour(stream_error="overloaded_error")
    )
    gw = await gateway(base_config({"a": claude(only)}, {"claude": {"tiers": [{"a": 1}]}}))
    status, body = await post(gw.url, "/v1/messages", MESSAGES)
    assert status >= 500
    obj = orjson.loads(body)
    assert obj["type"] == "error" and obj["error"]["type"]
    assert b"sk-ant-inband" not in body
