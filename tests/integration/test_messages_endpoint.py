"""Messages clients (the official anthropic SDK) through the gateway, to every upstream dialect."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, InProcessGateway, base_config, upstream

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider

SECRET = "sk-ant-test-secret-99"
BOUND = 10.0
DIALECTS = ["anthropic", "openai", "gemini", "bedrock"]
WEATHER: Any = {
    "name": "get_weather",
    "description": "forecast",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", SECRET)
    monkeypatch.setenv("AWS_TEST_KEY_ID", "AKIDMESSAGES000001")


def config_for(fake: FakeProvider) -> dict[str, object]:
    if fake.dialect == "openai":
        return upstream(fake)
    if fake.dialect == "bedrock":
        return {
            "provider": "bedrock",
            "region": "eu-west-1",
            "base_url": fake.base_url,
            "credential": "env:ANTHROPIC_TEST_KEY",
            "access_key_id": "env:AWS_TEST_KEY_ID",
            "model": f"{fake.name}-model",
        }
    if fake.dialect == "gemini":
        return {
            "provider": "gemini",
            "base_url": fake.base_url,
            "credential": "env:ANTHROPIC_TEST_KEY",
            "model": f"{fake.name}-model",
        }
    return {
        "provider": "anthropic",
        "base_url": fake.base_url + "/v1",
        "credential": "env:ANTHROPIC_TEST_KEY",
        "model": f"{fake.name}-model",
    }


async def start(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str, default: Behaviour | None = None
) -> tuple[FakeProvider, InProcessGateway, anthropic.AsyncAnthropic]:
    extra: dict[str, object] = {}
    if dialect == "bedrock":
        extra["aws_keys"] = {"AKIDMESSAGES000001": SECRET}
    fake = await fakes("up", default=default, dialect=dialect, **extra)
    gw = await gateway(base_config({"u": config_for(fake)}, {"claude": {"tiers": [{"u": 1}]}}))
    sdk = anthropic.AsyncAnthropic(
        base_url=gw.url, api_key="client-key", max_retries=0, timeout=BOUND
    )
    return fake, gw, sdk


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_non_stream(fakes: FakeFactory, gateway: GatewayFactory, dialect: str) -> None:
    fake, _, sdk = await start(
        fakes, gateway, dialect, Behaviour(text="Hello there", chunks=3, prompt_tokens=8)
    )
    async with sdk:
        msg = await sdk.messages.create(
            model="claude",
            max_tokens=64,
            system="be brief",
            messages=[{"role": "user", "content": "hi"}],
        )
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello there"
    assert msg.stop_reason == "end_turn"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (8, 3)
    seen = fake.requests[-1]
    assert seen.header("x-api-key") in (SECRET, None)
    assert "client-key" not in str(seen.headers)
    body = seen.json()
    if dialect == "bedrock":
        assert seen.path == "/model/up-model/converse"
        assert body["system"] == [{"text": "be brief"}]
        assert SECRET not in str(seen.headers)
        return
    if dialect == "gemini":
        assert seen.path == "/v1beta/models/up-model:generateContent"
        assert seen.header("x-goog-api-key") == SECRET
        assert body["systemInstruction"] == {"parts": [{"text": "be brief"}]}
        return
    assert body["model"] == "up-model"
    if dialect == "openai":
        assert seen.path == "/v1/chat/completions"
        assert body["messages"][0] == {"role": "system", "content": "be brief"}  # type: ignore[index]
    else:
        assert seen.path == "/v1/messages" and seen.header("x-api-key") == SECRET


async def test_pass_through_is_byte_for_byte(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    fake, gw, _ = await start(fakes, gateway, "anthropic", Behaviour(text="abc", chunks=3))

    body = {
        "model": "claude",
        "max_tokens": 5,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    async with aiohttp.ClientSession() as s:
        async with s.post(gw.url + "/v1/messages", json=body) as r:
            via_gateway = await r.read()
        direct = {**body, "model": "up-model"}
        async with s.post(fake.base_url + "/v1/messages", json=direct) as r:
            straight = await r.read()
    # Only the fake's per-request ids differ between the two answers.
    assert via_gateway.replace(b"up_1", b"up_2") == straight


async def test_a_large_messages_body_reaches_an_anthropic_upstream_renamed_and_whole(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    """From 256 KiB up the body goes as pieces of the client's buffer: the bytes that arrive
    are the client's with only the model id changed."""
    fake, gw, _ = await start(fakes, gateway, "anthropic")
    text = "y" * (600 * 1024)
    body = orjson.dumps(
        {"model": "claude", "max_tokens": 5, "messages": [{"role": "user", "content": text}]}
    )
    async with aiohttp.ClientSession() as s, s.post(gw.url + "/v1/messages", data=body) as r:
        assert r.status == 200
    assert fake.requests[-1].body == body.replace(b'"model":"claude"', b'"model":"up-model"')


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_stream(fakes: FakeFactory, gateway: GatewayFactory, dialect: str) -> None:
    _, _, sdk = await start(
        fakes, gateway, dialect, Behaviour(text="abcdef", chunks=3, prompt_tokens=5)
    )
    async with (
        sdk,
        sdk.messages.stream(
            model="claude", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        pieces = [t async for t in stream.text_stream]
        final = await stream.get_final_message()
    assert pieces == ["ab", "cd", "ef"]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    assert final.usage.input_tokens == 5


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("stream", [False, True])
async def test_tool_use_and_tool_result_turn(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str, stream: bool
) -> None:
    fake, _, sdk = await start(
        fakes, gateway, dialect, Behaviour(tool="get_weather", text='{"city": "Oslo"}', chunks=4)
    )
    messages: Any = [{"role": "user", "content": "weather?"}]
    msg: anthropic.types.Message
    async with sdk:
        if stream:
            async with sdk.messages.stream(
                model="claude", max_tokens=64, messages=messages, tools=[WEATHER]
            ) as s:
                kinds = [ev.type async for ev in s]
                msg = await s.get_final_message()
            # The arguments arrive in pieces (Gemini sends a function call whole).
            assert kinds.count("input_json") == (1 if dialect == "gemini" else 4)
        else:
            msg = await sdk.messages.create(
                model="claude", max_tokens=64, messages=messages, tools=[WEATHER]
            )
        assert msg.stop_reason == "tool_use"
        block = msg.content[-1]
        assert block.type == "tool_use"
        assert (block.name, block.input) == ("get_weather", {"city": "Oslo"})
        fake.default = Behaviour(text="It is 3C.")
        follow: Any = [
            *messages,
            {"role": "assistant", "content": [block.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "3C"}],
            },
        ]
        res = await sdk.messages.create(
            model="claude", max_tokens=64, messages=follow, tools=[WEATHER]
        )
    assert res.content[0].type == "text" and res.content[0].text == "It is 3C."
    if dialect == "bedrock":
        sent = fake.requests[-1].json()["messages"]
        assert sent[1]["content"][0]["toolUse"]["name"] == "get_weather"  # type: ignore[index]
        assert sent[2]["content"][0]["toolResult"]["toolUseId"] == block.id  # type: ignore[index]
        return
    if dialect == "gemini":
        sent = fake.requests[-1].json()["contents"]
        call = {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}
        assert sent[1] == {"role": "model", "parts": [call]}  # type: ignore[index]
        result = {"functionResponse": {"name": "get_weather", "response": {"content": "3C"}}}
        assert sent[2] == {"role": "user", "parts": [result]}  # type: ignore[index]
        return
    sent = fake.requests[-1].json()["messages"]
    if dialect == "openai":
        assert sent[1]["tool_calls"][0]["id"] == block.id  # type: ignore[index]
        assert sent[2] == {"role": "tool", "tool_call_id": block.id, "content": "3C"}  # type: ignore[index]


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_image_input(fakes: FakeFactory, gateway: GatewayFactory, dialect: str) -> None:
    fake, _, sdk = await start(fakes, gateway, dialect)
    image: Any = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    async with sdk:
        await sdk.messages.create(
            model="claude",
            max_tokens=8,
            messages=[{"role": "user", "content": [image, {"type": "text", "text": "what?"}]}],
        )
    if dialect == "bedrock":
        part = fake.requests[-1].json()["messages"][0]["content"][0]  # type: ignore[index]
        assert part == {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}
        return
    if dialect == "gemini":
        part = fake.requests[-1].json()["contents"][0]["parts"][0]  # type: ignore[index]
        assert part == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
        return
    part = fake.requests[-1].json()["messages"][0]["content"][0]  # type: ignore[index]
    if dialect == "openai":
        assert part == {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
        }
    else:
        assert part == image


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_errors_are_anthropic_shaped(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str
) -> None:
    _, _, sdk = await start(fakes, gateway, dialect, Behaviour(status=400))
    async with sdk:
        with pytest.raises(anthropic.BadRequestError) as bad:
            await sdk.messages.create(
                model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            )
        with pytest.raises(anthropic.NotFoundError) as missing:
            await sdk.messages.create(
                model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            )
    for caught in (bad.value, missing.value):
        body = orjson.loads(caught.response.content)
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert orjson.loads(missing.value.response.content)["error"]["type"] == "not_found_error"


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_reset_mid_stream_ends_with_an_error_event(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str
) -> None:
    _, _, sdk = await start(
        fakes, gateway, dialect, Behaviour(chunks=6, fault="reset_mid_stream", fault_after_chunks=2)
    )
    got: list[str] = []
    async with sdk:
        with pytest.raises(anthropic.APIStatusError):
            await _drain(sdk, got)
    assert got


async def _drain(sdk: anthropic.AsyncAnthropic, into: list[str]) -> None:
    async with sdk.messages.stream(
        model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}]
    ) as stream:
        async for text in stream.text_stream:
            into.append(text)


async def test_529_fails_over_from_anthropic_to_openai_streaming(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    c = await fakes("c", default=Behaviour(status=529), dialect="anthropic")
    o = await fakes("o", default=Behaviour(text="from openai", chunks=2))
    gw = await gateway(
        base_config(
            {"c": config_for(c), "o": config_for(o)}, {"claude": {"tiers": [{"c": 1}, {"o": 1}]}}
        )
    )
    async with (
        anthropic.AsyncAnthropic(base_url=gw.url, api_key="k", max_retries=0, timeout=BOUND) as sdk,
        sdk.messages.stream(
            model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        ) as stream,
    ):
        text = "".join([t async for t in stream.text_stream])
    assert text == "from openai"
    assert (len(c.requests), len(o.requests)) == (1, 1)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_count_tokens(fakes: FakeFactory, gateway: GatewayFactory, dialect: str) -> None:
    fake, _, sdk = await start(fakes, gateway, dialect, Behaviour(prompt_tokens=17))
    async with sdk:
        res = await sdk.messages.count_tokens(
            model="claude", messages=[{"role": "user", "content": "x" * 400}]
        )
    if dialect == "anthropic":
        assert res.input_tokens == 17
        assert fake.requests[-1].path == "/v1/messages/count_tokens"
    else:
        assert 100 <= res.input_tokens <= 110  # estimated: 400 characters at ~4 per token
        assert fake.requests == []


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_429_moves_to_the_next_tier_and_pauses_the_upstream(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str
) -> None:
    extra: dict[str, object] = {}
    if dialect == "bedrock":
        extra["aws_keys"] = {"AKIDMESSAGES000001": SECRET}
    limited = await fakes("lim", dialect=dialect, **extra)
    limited.script(Behaviour(status=429, retry_after="30"))
    backup = await fakes("backup", default=Behaviour(text="from backup", chunks=2))
    gw = await gateway(
        base_config(
            {"lim": config_for(limited), "backup": config_for(backup)},
            {"claude": {"tiers": [{"lim": 1}, {"backup": 1}]}},
        )
    )
    async with anthropic.AsyncAnthropic(
        base_url=gw.url, api_key="k", max_retries=0, timeout=BOUND
    ) as sdk:
        for _ in range(3):
            async with sdk.messages.stream(
                model="claude", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            ) as stream:
                assert "".join([t async for t in stream.text_stream]) == "from backup"
                final = await stream.get_final_message()
            assert final.usage.output_tokens == 2
    assert len(limited.requests) == 1


async def test_claude_tool_ids_reach_a_mistral_upstream_in_its_format(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    """A Messages history with `toolu_...` ids, served from a Mistral-preset upstream."""
    fake = await fakes("mistral", default=Behaviour(text="ok"))
    up = {"provider": "mistral", "base_url": fake.base_url, "model": "mistral-small"}
    gw = await gateway(base_config({"m": up}, {"claude": {"tiers": [{"m": 1}]}}))
    history: Any = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "toolu_01Xyz", "name": "get_weather", "input": {}}
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01Xyz", "content": "3C"}],
        },
    ]
    async with anthropic.AsyncAnthropic(
        base_url=gw.url, api_key="k", max_retries=0, timeout=BOUND
    ) as sdk:
        await sdk.messages.create(model="claude", max_tokens=8, messages=history, tools=[WEATHER])
    sent = fake.requests[-1].json()["messages"]
    call_id = sent[1]["tool_calls"][0]["id"]  # type: ignore[index]
    assert len(call_id) == 9 and call_id.isalnum()
    assert sent[2]["tool_call_id"] == call_id  # type: ignore[index]
