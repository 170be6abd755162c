"""Agent traffic through a real gateway process: keepalives seen by curl, ignored by the SDKs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import openai
import pytest
from e2e.e2e_harness import GatewayStarter, chat_body, config_dict, write_config

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)

SLOW = Behaviour(text="thought about it", chunks=3, chunk_delay_s=0.6)


@pytest.fixture
async def slow_fakes() -> AsyncIterator[dict[str, FakeProvider]]:
    """An OpenAI-compatible and an Anthropic fake that pause between their tokens."""
    fakes = {
        "oai": FakeProvider(name="oai", default=SLOW),
        "claude": FakeProvider(name="claude", dialect="anthropic", default=SLOW),
    }
    for fake in fakes.values():
        await fake.start("127.0.0.1", 0)
    yield fakes
    for fake in fakes.values():
        await fake.stop()


async def start(
    tmp_path: Path, spawn_gateway: GatewayStarter, fakes: dict[str, FakeProvider]
) -> str:
    ups = {
        "oai": {"provider": "openai", "base_url": fakes["oai"].base_url, "model": "m"},
        "claude": {
            "provider": "anthropic",
            "base_url": fakes["claude"].base_url + "/v1",
            "credential": "env:K",
            "model": "claude-x",
        },
    }
    routes = {
        "chat": {"tiers": [{"oai": 1}], "keepalive_s": 0.15},
        "claude": {"tiers": [{"claude": 1}], "keepalive_s": 0.15},
    }
    path = tmp_path / "gateway.toml"
    write_config(path, config_dict(ups, routes))
    gw = spawn_gateway(path, env={"K": "sk-agent-e2e"})
    return await gw.wait_ready()


async def test_curl_sees_keepalive_comments_and_both_sdks_ignore_them(
    tmp_path: Path, spawn_gateway: GatewayStarter, slow_fakes: dict[str, FakeProvider]
) -> None:
    url = await start(tmp_path, spawn_gateway, slow_fakes)
    curl = await asyncio.create_subprocess_exec(
        "curl",
        "-N",
        "-sS",
        "--max-time",
        "15",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        chat_body("chat", stream=True).decode(),
        f"{url}/v1/chat/completions",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(15):
            out, err = await curl.communicate()
    finally:
        if curl.returncode is None:
            curl.kill()
            await curl.wait()
    assert curl.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines.count(": keepalive") >= 3, lines
    assert [line for line in lines if line][-1] == "data: [DONE]"

    async with openai.AsyncOpenAI(
        base_url=url + "/v1", api_key="client", max_retries=0, timeout=10.0
    ) as oai:
        s = await oai.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in s if c.choices])
        assert text == "thought about it"
        # The same through an Anthropic upstream, translated to chat.
        s = await oai.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in s if c.choices])
        assert text == "thought about it"

    async with anthropic.AsyncAnthropic(
        base_url=url, api_key="client", max_retries=0, timeout=10.0
    ) as client:
        async with client.messages.stream(
            model="claude", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        assert text == "thought about it"
        assert final.stop_reason == "end_turn"


async def test_responses_follow_ups_reach_the_upstream_that_stored_them(
    tmp_path: Path, spawn_gateway: GatewayStarter
) -> None:
    fakes = [FakeProvider(name=n, default=Behaviour(text="ok", chunks=1)) for n in ("x", "y")]
    for fake in fakes:
        await fake.start("127.0.0.1", 0)
    try:
        ups = {f.name: {"provider": "openai", "base_url": f.base_url, "model": "m"} for f in fakes}
        route = {"strategy": "round_robin", "tiers": [{"x": 1, "y": 1}]}
        path = tmp_path / "gateway.toml"
        write_config(path, config_dict(ups, {"chat": route}))
        url = await spawn_gateway(path).wait_ready()
        async with openai.AsyncOpenAI(
            base_url=url + "/v1", api_key="client", max_retries=0, timeout=10.0
        ) as client:
            first = await client.responses.create(model="chat", input="hi")
            for _ in range(4):
                res = await client.responses.create(
                    model="chat", input="go on", previous_response_id=first.id
                )
                assert res.output_text == "ok"
        counts = sorted(len(f.requests) for f in fakes)
        assert counts == [0, 5]
    finally:
        for fake in fakes:
            await fake.stop()
