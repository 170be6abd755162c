"""One conformance suite: OpenAI chat clients (the official SDK) against every upstream dialect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import openai
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, InProcessGateway, base_config

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider

KEY = "sk-conformance-secret-5150"
BOUND = 10.0
DIALECTS = ["openai", "anthropic", "gemini", "bedrock"]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
HI: Any = [{"role": "user", "content": "hi"}]
# Bedrock never sends its secret: the fake verifies the SigV4 signature made with it.
AWS = {"access_key_id": "env:CONFORMANCE_KEY_ID", "region": "us-east-1"}
CREDENTIAL_HEADER = {
    "openai": "authorization",
    "anthropic": "x-api-key",
    "gemini": "x-goog-api-key",
}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONFORMANCE_KEY", KEY)
    monkeypatch.setenv("CONFORMANCE_KEY_ID", "AKIDCONFORMANCE00001")


def config_for(fake: FakeProvider) -> dict[str, object]:
    base = fake.base_url + ("/v1" if fake.dialect == "anthropic" else "")
    return {
        "provider": fake.dialect,
        "base_url": base,
        "credential": "env:CONFORMANCE_KEY",
        "model": f"{fake.name}-model",
        **(AWS if fake.dialect == "bedrock" else {}),
    }


async def make_fake(
    fakes: FakeFactory, name: str, dialect: str, default: Behaviour | None = None
) -> FakeProvider:
    keys = {"AKIDCONFORMANCE00001": KEY}
    extra: dict[str, object] = {"aws_keys": keys} if dialect == "bedrock" else {}
    return await fakes(name, default=default, dialect=dialect, **extra)


async def start(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str, default: Behaviour | None = None
) -> tuple[FakeProvider, InProcessGateway, openai.AsyncOpenAI]:
    fake = await make_fake(fakes, "up", dialect, default)
    gw = await gateway(base_config({"u": config_for(fake)}, {"chat": {"tiers": [{"u": 1}]}}))
    client = openai.AsyncOpenAI(
        base_url=gw.url + "/v1", api_key="client", max_retries=0, timeout=BOUND
    )
    return fake, gw, client


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_non_stream_with_usage(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str
) -> None:
    fake, _, client = await start(
        fakes, gateway, dialect, Behaviour(text="one two", chunks=2, prompt_tokens=6)
    )
    async with client:
        res = await client.chat.completions.create(model="chat", messages=HI)
    assert res.choices[0].message.content == "one two"
    assert res.choices[0].finish_reason == "stop"
    assert res.usage is not None and (res.usage.prompt_tokens, res.usage.completion_tokens) == (
        6,
        2,
    )
    seen = fake.requests[-1]
    assert KEY not in seen.path + seen.query  # never in a URL
    if dialect == "bedrock":  # answered, so the fake verified the signature
        auth = seen.header("authorization") or ""
        assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDCONFORMANCE00001/")
        assert KEY not in str(seen.headers)
        return
    value = seen.header(CREDENTIAL_HEADER[dialect])
    assert value is not None and KEY in value


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_stream_incremental_with_usage(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str
) -> None:
    _, _, client = await start(
        fakes, gateway, dialect, Behaviour(text="abcdef", chunks=3, prompt_tokens=4)
    )
    async with client:
        stream = await client.chat.completions.create(
            model="chat", messages=HI, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == ["ab", "cd", "ef"]  # one client chunk per upstream event, as they came
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 3)


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_streamed_tool_call_then_tool_result_turn(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str
) -> None:
    fake, _, client = await start(
        fakes, gateway, dialect, Behaviour(tool="get_weather", text='{"city": "Oslo"}', chunks=4)
    )
    async with client:
        stream = await client.chat.completions.create(
            model="chat", messages=HI, tools=[WEATHER], stream=True
        )
        chunks = [c async for c in stream]
        calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
        assert calls[0].id and calls[0].function and calls[0].function.name == "get_weather"
        args = "".join(tc.function.arguments or "" for tc in calls if tc.function)
        assert orjson.loads(args) == {"city": "Oslo"}
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
        fake.default = Behaviour(text="It is 3C.")
        follow: Any = [
            *HI,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": calls[0].id,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": args},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": calls[0].id, "content": "3C"},
        ]
        res = await client.chat.completions.create(model="chat", messages=follow, tools=[WEATHER])
    assert res.choices[0].message.content == "It is 3C."
    assert len(fake.requests[-1].json()) > 0


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_image_input(fakes: FakeFactory, gateway: GatewayFactory, dialect: str) -> None:
    fake, _, client = await start(fakes, gateway, dialect)
    image: Any = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    async with client:
        await client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": [{"type": "text", "text": "what?"}, image]}],
        )
    assert b"iVBORw0KGgo=" in fake.requests[-1].body


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("status", "error"), [(400, openai.BadRequestError), (404, openai.NotFoundError)]
)
async def test_client_errors_come_back_openai_shaped(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str, status: int, error: type[Exception]
) -> None:
    _, _, client = await start(fakes, gateway, dialect, Behaviour(status=status))
    async with client:
        with pytest.raises(error) as caught:
            await client.chat.completions.create(model="chat", messages=HI)
    assert isinstance(caught.value, openai.APIStatusError)
    body = orjson.loads(caught.value.response.content)
    assert set(body["error"]) == {"message", "type", "param", "code"}


def rate_limit_headers(dialect: str) -> tuple[tuple[str, str], ...]:
    """Each provider's own way of saying "wait 30 s" (computed when the test runs)."""
    if dialect == "anthropic":
        reset = datetime.now(UTC) + timedelta(seconds=30)
        return (("anthropic-ratelimit-requests-reset", reset.strftime("%Y-%m-%dT%H:%M:%SZ")),)
    if dialect == "openai":
        return (("x-ratelimit-reset-requests", "30s"),)
    return (("Retry-After", "30"),)  # Gemini and Bedrock send no rate-limit headers of their own


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_429_with_the_providers_headers_moves_to_the_next_tier(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str
) -> None:
    limited = await make_fake(fakes, "lim", dialect)
    limited.script(Behaviour(status=429, headers=rate_limit_headers(dialect)))
    backup = await fakes("backup", default=Behaviour(text="from backup", chunks=1))
    gw = await gateway(
        base_config(
            {"lim": config_for(limited), "backup": config_for(backup)},
            {"chat": {"tiers": [{"lim": 1}, {"backup": 1}]}},
        )
    )
    async with openai.AsyncOpenAI(
        base_url=gw.url + "/v1", api_key="c", max_retries=0, timeout=BOUND
    ) as client:
        for _ in range(3):
            stream = await client.chat.completions.create(model="chat", messages=HI, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == "from backup"
    assert len(limited.requests) == 1  # paused by its 429 for ~30 s


@pytest.mark.parametrize("dialect", DIALECTS)
async def test_reset_mid_stream_ends_with_an_error_event(
    fakes: FakeFactory, gateway: GatewayFactory, dialect: str
) -> None:
    _, _, client = await start(
        fakes, gateway, dialect, Behaviour(chunks=6, fault="reset_mid_stream", fault_after_chunks=2)
    )
    got: list[str] = []
    async with client:
        stream = await client.chat.completions.create(model="chat", messages=HI, stream=True)
        with pytest.raises(openai.APIError):
            await _drain(stream, got)
    assert "".join(got)


async def _drain(stream: openai.AsyncStream[Any], into: list[str]) -> None:
    async for c in stream:
        if c.choices:
            into.append(c.choices[0].delta.content or "")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("anthropic", "gemini"),
        ("gemini", "openai"),
        ("openai", "bedrock"),
        ("bedrock", "anthropic"),
    ],
)
async def test_cross_dialect_fallback_streaming(
    fakes: FakeFactory, gateway: GatewayFactory, first: str, second: str
) -> None:
    down = await make_fake(fakes, "down", first, Behaviour(status=503))
    up = await make_fake(fakes, "up", second, Behaviour(text="survived", chunks=2))
    gw = await gateway(
        base_config(
            {"down": config_for(down), "up": config_for(up)},
            {"chat": {"tiers": [{"down": 1}, {"up": 1}]}},
        )
    )
    async with openai.AsyncOpenAI(
        base_url=gw.url + "/v1", api_key="c", max_retries=0, timeout=BOUND
    ) as client:
        stream = await client.chat.completions.create(model="chat", messages=HI, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "survived"
