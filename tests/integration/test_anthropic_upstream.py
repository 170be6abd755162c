"""OpenAI chat clients (the official SDK) through the gateway to Anthropic Messages upstreams."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web
from conftest import FakeFactory, GatewayFactory, InProcessGateway, base_config, post_chat, upstream

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider

SECRET = "sk-ant-test-secret-77"
BOUND = 10.0
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", SECRET)


def claude(fake: FakeProvider, **extra: object) -> dict[str, object]:
    return {
        "provider": "anthropic",
        "base_url": fake.base_url + "/v1",
        "credential": "env:ANTHROPIC_TEST_KEY",
        "model": "claude-test",
        **extra,
    }


async def start(
    fakes: FakeFactory, gateway: GatewayFactory, default: Behaviour | None = None
) -> tuple[FakeProvider, InProcessGateway, openai.AsyncOpenAI]:
    fake = await fakes("claude", default=default, dialect="anthropic")
    gw = await gateway(base_config({"c": claude(fake)}, {"chat": {"tiers": [{"c": 1}]}}))
    sdk = openai.AsyncOpenAI(
        base_url=gw.url + "/v1", api_key="client-key", max_retries=0, timeout=BOUND
    )
    return fake, gw, sdk


async def test_non_stream_text_usage_and_what_the_upstream_saw(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    fake, gw, sdk = await start(
        fakes, gateway, Behaviour(text="Hello there", chunks=3, prompt_tokens=9, cached_tokens=4)
    )
    async with sdk:
        res = await sdk.chat.completions.create(
            model="chat",
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        )
    assert res.choices[0].message.content == "Hello there"
    assert res.choices[0].finish_reason == "stop"
    assert res.usage is not None
    assert (res.usage.prompt_tokens, res.usage.completion_tokens) == (13, 3)
    assert res.usage.prompt_tokens_details is not None
    assert res.usage.prompt_tokens_details.cached_tokens == 4
    seen = fake.requests[-1]
    assert seen.path == "/v1/messages"
    assert seen.header("x-api-key") == SECRET
    assert seen.header("anthropic-version") == "2023-06-01"
    assert seen.header("authorization") is None
    body = seen.json()
    assert body["model"] == "claude-test"
    assert body["system"] == [{"type": "text", "text": "be brief"}]
    assert body["max_tokens"] == 4096


async def test_stream_is_translated_incrementally_with_usage(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    _, _, sdk = await start(fakes, gateway, Behaviour(text="abcdef", chunks=3, prompt_tokens=5))
    async with sdk:
        stream = await sdk.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "abcdef"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 3)


@pytest.mark.parametrize("stream", [False, True])
async def test_tool_call_with_streamed_arguments(
    fakes: FakeFactory, gateway: GatewayFactory, stream: bool
) -> None:
    fake, _, sdk = await start(
        fakes, gateway, Behaviour(tool="get_weather", text='{"city": "Oslo"}', chunks=4)
    )
    messages: Any = [{"role": "user", "content": "weather?"}]
    async with sdk:
        if stream:
            s = await sdk.chat.completions.create(
                model="chat",
                messages=messages,
                tools=[WEATHER],
                stream=True,
            )
            chunks = [c async for c in s]
            deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
            assert len([d for d in deltas if d.function and d.function.arguments]) == 4
            name = deltas[0].function.name if deltas[0].function else None
            call_id = deltas[0].id
            args = "".join(d.function.arguments or "" for d in deltas if d.function)
            finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        else:
            res = await sdk.chat.completions.create(
                model="chat", messages=messages, tools=[WEATHER]
            )
            calls = res.choices[0].message.tool_calls or []
            name, call_id, args = calls[0].function.name, calls[0].id, calls[0].function.arguments  # type: ignore[union-attr]
            finish = res.choices[0].finish_reason
        assert (name, finish) == ("get_weather", "tool_calls")
        assert orjson.loads(args) == {"city": "Oslo"}
        # The next turn carries the call and its result back: Messages sees tool_use/tool_result.
        follow: Any = [
            *messages,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": args},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": "3C"},
        ]
        fake.default = Behaviour(text="It is 3C.")
        res2 = await sdk.chat.completions.create(model="chat", messages=follow, tools=[WEATHER])
    assert res2.choices[0].message.content == "It is 3C."
    sent = fake.requests[-1].json()["messages"]
    assert sent[1]["content"][0]["type"] == "tool_use"  # type: ignore[index]
    assert sent[2]["content"][0] == {"type": "tool_result", "tool_use_id": call_id, "content": "3C"}  # type: ignore[index]
    assert fake.requests[-1].json()["tools"][0]["name"] == "get_weather"  # type: ignore[index]


async def test_image_input_reaches_messages_as_an_image_block(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    fake, _, sdk = await start(fakes, gateway)
    async with sdk:
        await sdk.chat.completions.create(
            model="chat",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is it"},
                        {
                            "type": "image_url",
                            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                        },
                    ],
                }
            ],
        )
    block = fake.requests[-1].json()["messages"][0]["content"][1]  # type: ignore[index]
    assert block == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }


async def test_client_error_comes_back_openai_shaped(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    _, _, sdk = await start(fakes, gateway, Behaviour(status=400))
    async with sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x"}]
            )
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "invalid_request_error"
    assert SECRET not in str(caught.value.response.text)


@pytest.mark.parametrize("stream", [False, True])
async def test_overloaded_529_fails_over_to_an_openai_tier(
    fakes: FakeFactory, gateway: GatewayFactory, stream: bool
) -> None:
    c = await fakes("claude", default=Behaviour(status=529), dialect="anthropic")
    o = await fakes("oai", default=Behaviour(text="from openai", chunks=2))
    gw = await gateway(
        base_config({"c": claude(c), "o": upstream(o)}, {"chat": {"tiers": [{"c": 1}, {"o": 1}]}})
    )
    async with openai.AsyncOpenAI(
        base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=BOUND
    ) as sdk:
        if stream:
            s = await sdk.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x"}], stream=True
            )
            text = "".join([ch.choices[0].delta.content or "" async for ch in s if ch.choices])
        else:
            res = await sdk.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x"}]
            )
            text = res.choices[0].message.content or ""
    assert text == "from openai"
    assert len(c.requests) == 1 and len(o.requests) == 1


async def test_overloaded_alone_is_a_503(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    _, gw, _ = await start(fakes, gateway, Behaviour(status=529))
    status, headers, body = await post_chat(
        gw.url, {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    )
    assert status == 503
    assert orjson.loads(body)["error"]["code"] == "upstream_unavailable"
    assert "Retry-After" in headers


async def test_429_with_anthropic_reset_header_pauses_that_upstream(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    reset = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    c = await fakes("claude", dialect="anthropic")
    c.script(Behaviour(status=429, headers=(("anthropic-ratelimit-requests-reset", reset),)))
    o = await fakes("oai")
    gw = await gateway(
        base_config({"c": claude(c), "o": upstream(o)}, {"chat": {"tiers": [{"c": 1}, {"o": 1}]}})
    )
    chat = {"model": "chat", "messages": [{"role": "user", "content": "x"}]}
    for _ in range(3):
        status, headers, _ = await post_chat(gw.url, chat)
        assert (status, headers["x-gateway-upstream"]) == (200, "o")
    assert len(c.requests) == 1  # paused for ~30 s after its 429: not asked again
    assert gw.stats("c").limited_until > time.monotonic() + 20


async def test_reset_mid_stream_ends_with_an_error_event(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    _, _, sdk = await start(
        fakes, gateway, Behaviour(chunks=6, fault="reset_mid_stream", fault_after_chunks=2)
    )
    got: list[str] = []
    async with sdk:
        s = await sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}], stream=True
        )
        with pytest.raises(openai.APIError):
            await _drain(s, got)
    assert "".join(got)  # the first pieces arrived before the break


async def test_route_of_chat_only_upstreams_refuses_embeddings_with_400(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    fake, gw, sdk = await start(fakes, gateway)
    async with sdk:
        with pytest.raises(openai.BadRequestError) as caught:
            await sdk.embeddings.create(model="chat", input="x")
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "unsupported_endpoint"
    assert fake.requests == []


async def _drain(stream: openai.AsyncStream[Any], into: list[str]) -> None:
    async for ch in stream:
        if ch.choices:
            into.append(ch.choices[0].delta.content or "")


async def test_a_stream_opening_with_overloaded_error_fails_over(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    """`overloaded_error` as the first event of a 200 stream is a 529: the next tier answers."""
    hits: list[str] = []

    async def overloaded(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(
            b"event: error\ndata: "
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
        )
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages", overloaded)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        o = await fakes("oai", default=Behaviour(text="from openai", chunks=2))
        c = {
            "provider": "anthropic",
            "base_url": f"http://127.0.0.1:{port}/v1",
            "credential": "env:ANTHROPIC_TEST_KEY",
        }
        gw = await gateway(
            base_config({"c": c, "o": upstream(o)}, {"chat": {"tiers": [{"c": 1}, {"o": 1}]}})
        )
        async with openai.AsyncOpenAI(
            base_url=gw.url + "/v1", api_key="k", max_retries=0, timeout=BOUND
        ) as sdk:
            s = await sdk.chat.completions.create(
                model="chat", messages=[{"role": "user", "content": "x"}], stream=True
            )
            text = "".join([ch.choices[0].delta.content or "" async for ch in s if ch.choices])
        assert text == "from openai"
        assert hits == ["/v1/messages"]
    finally:
        await runner.cleanup()
