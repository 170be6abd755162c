"""The response cache through a real gateway process and the official openai SDK."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest
from e2e.e2e_harness import FakeStarter, GatewayStarter, config_dict, upstream_entry, write_config
from openai.types.chat import ChatCompletionMessageParam

from proxy.fake.behaviour import Behaviour

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)

TEXT = "Cached words come back"


async def test_openai_sdk_gets_hits_as_json_and_as_a_stream(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    fake = await fake_upstreams("primary", Behaviour(text=TEXT, chunks=4, prompt_tokens=11))
    path = tmp_path / "gateway.toml"
    route = {"tiers": [{"primary": 1}], "cache": {"ttl_s": 60}}
    write_config(path, config_dict({"primary": upstream_entry(fake, "m")}, {"chat": route}))
    gw = spawn_gateway(path)
    await gw.wait_ready()
    client = openai.AsyncOpenAI(
        base_url=f"{gw.address}/v1", api_key="sk-any", max_retries=0, timeout=10.0
    )
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    async with client:
        first = await client.chat.completions.with_raw_response.create(
            model="chat",
            messages=messages,
        )
        assert first.headers["x-gateway-cache"] == "miss"
        again = await client.chat.completions.with_raw_response.create(
            model="chat",
            messages=messages,
        )
        assert again.headers["x-gateway-cache"] == "hit"
        answer = again.parse()
        assert answer.choices[0].message.content == TEXT
        assert answer.usage is not None and answer.usage.prompt_tokens == 11
        raw = await client.chat.completions.with_raw_response.create(
            model="chat",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": "e2e-cache-stream"},
        )
        assert raw.headers["x-gateway-cache"] == "hit"
        pieces: list[str] = []
        usage = None
        finish = None
        async with asyncio.timeout(10):
            async for chunk in raw.parse():
                if chunk.choices:
                    pieces.append(chunk.choices[0].delta.content or "")
                    finish = chunk.choices[0].finish_reason or finish
                if chunk.usage is not None:
                    usage = chunk.usage
    assert "".join(pieces) == TEXT
    assert finish == "stop"
    assert usage is not None and usage.prompt_tokens == 11
    assert len(fake.requests) == 1
    last = await gw.wait_event("access", where=lambda e: e.get("request_id") == "e2e-cache-stream")
    assert last["cache"] == "hit"
    hits = [e for e in gw.events("access") if e.get("cache") == "hit"]
    assert len(hits) == 2 and all(e["cost_usd"] == 0.0 for e in hits)
