"""Both SDKs through a real gateway process, across dialects: Messages and chat, failover."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import openai
import pytest
from e2e.e2e_harness import GatewayStarter, config_dict, write_config

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)

KEY = "sk-dialects-e2e-secret-31337"


@pytest.fixture
async def dialect_fakes() -> AsyncIterator[dict[str, FakeProvider]]:
    """An overloaded Anthropic fake, and healthy Gemini and Anthropic fakes."""
    fakes = {
        "down": FakeProvider(name="down", dialect="anthropic", default=Behaviour(status=529)),
        "gem": FakeProvider(
            name="gem", dialect="gemini", default=Behaviour(text="from gemini", chunks=3)
        ),
        "claude": FakeProvider(
            name="claude", dialect="anthropic", default=Behaviour(text="from claude", chunks=3)
        ),
    }
    for fake in fakes.values():
        await fake.start("127.0.0.1", 0)
    yield fakes
    for fake in fakes.values():
        await fake.stop()


async def test_both_sdks_across_dialects_with_failover(
    tmp_path: Path, spawn_gateway: GatewayStarter, dialect_fakes: dict[str, FakeProvider]
) -> None:
    f = dialect_fakes
    ups = {
        "down": {
            "provider": "anthropic",
            "base_url": f["down"].base_url + "/v1",
            "credential": "env:K",
        },
        "gem": {
            "provider": "gemini",
            "base_url": f["gem"].base_url,
            "credential": "env:K",
            "model": "gemini-x",
        },
        "claude": {
            "provider": "anthropic",
            "base_url": f["claude"].base_url + "/v1",
            "credential": "env:K",
            "model": "claude-x",
        },
    }
    routes = {"smart": {"tiers": [{"down": 1}, {"gem": 1}]}, "claude": {"tiers": [{"claude": 1}]}}
    path = tmp_path / "gateway.toml"
    write_config(path, config_dict(ups, routes))
    gw = spawn_gateway(path, env={"K": KEY})
    url = await gw.wait_ready()

    async with anthropic.AsyncAnthropic(
        base_url=url, api_key="client", max_retries=0, timeout=10.0
    ) as client:
        # Messages client: tier 0 answers 529, tier 1 is Gemini; the stream is translated twice.
        async with client.messages.stream(
            model="smart", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            text = "".join([t async for t in stream.text_stream])
        assert text == "from gemini"
        # Messages client to an Anthropic upstream: pass-through.
        msg = await client.messages.create(
            model="claude", max_tokens=32, messages=[{"role": "user", "content": "hi"}]
        )
        assert msg.content[0].type == "text" and msg.content[0].text == "from claude"
        with pytest.raises(anthropic.NotFoundError):
            await client.messages.create(
                model="nope", max_tokens=8, messages=[{"role": "user", "content": "x"}]
            )

    async with openai.AsyncOpenAI(
        base_url=url + "/v1", api_key="client", max_retries=0, timeout=10.0
    ) as oai:
        res = await oai.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}]
        )
        assert res.choices[0].message.content == "from claude"
        s = await oai.chat.completions.create(
            model="smart", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert (
            "".join([c.choices[0].delta.content or "" async for c in s if c.choices])
            == "from gemini"
        )

    assert f["gem"].requests[0].header("x-goog-api-key") == KEY
    assert KEY not in gw.output()
