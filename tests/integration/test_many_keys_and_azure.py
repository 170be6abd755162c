"""Azure upstreams, presets and many keys per upstream, through the real server."""

from __future__ import annotations

import aiohttp
import openai
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, post_chat

from proxy.fake.behaviour import Behaviour
from proxy.ops import logs

K1, K2 = "sk-first-key-0001", "sk-second-key-0002"
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_K1", K1)
    monkeypatch.setenv("TEST_K2", K2)


async def test_azure_paths_query_and_api_key(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    fake = await fakes("az", default=Behaviour(text="hello", chunks=2))
    root = fake.base_url.removesuffix("/v1")
    az = {
        "provider": "azure",
        "base_url": root,
        "deployment": "gpt4o-prod",
        "api_version": "2024-10-21",
        "credential": "env:TEST_K1",
    }
    gw = await gateway(base_config({"az": az}, {"chat": {"tiers": [{"az": 1}]}}))
    async with openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="c", max_retries=0) as sdk:
        res = await sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}]
        )
        stream = await sdk.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        await sdk.embeddings.create(model="chat", input="x")
    assert res.choices[0].message.content == "hello" and text == "hello"
    paths = [(r.path, r.query) for r in fake.requests]
    assert paths == [
        ("/openai/deployments/gpt4o-prod/chat/completions", "api-version=2024-10-21"),
        ("/openai/deployments/gpt4o-prod/chat/completions", "api-version=2024-10-21"),
        ("/openai/deployments/gpt4o-prod/embeddings", "api-version=2024-10-21"),
    ]
    assert all(
        r.header("api-key") == K1 and r.header("authorization") is None for r in fake.requests
    )


async def test_a_429_on_one_key_moves_traffic_to_the_other_at_once(
    fakes: FakeFactory, gateway: GatewayFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    fake = await fakes("multi")
    up = {
        "provider": "openai",
        "base_url": fake.base_url,
        "credential": ["env:TEST_K1", "env:TEST_K2"],
    }
    gw = await gateway(
        base_config({"multi": up}, {"chat": {"strategy": "round_robin", "tiers": [{"multi": 1}]}})
    )
    # Whichever key is asked first gets a 429 that asks for a 30 s pause.
    fake.script(Behaviour(status=429, retry_after="30"))
    status, headers, _ = await post_chat(gw.url, CHAT)
    assert status == 200 and headers["x-gateway-attempts"] == "2"
    limited = fake.requests[0].header("authorization")
    other = fake.requests[1].header("authorization")
    assert {limited, other} == {f"Bearer {K1}", f"Bearer {K2}"}
    answered = headers["x-gateway-upstream"]
    assert answered in ("multi#1", "multi#2")
    for _ in range(4):  # every later request goes to the key that was not limited
        status, headers, _ = await post_chat(gw.url, CHAT)
        assert (status, headers["x-gateway-upstream"]) == (200, answered)
    assert all(r.header("authorization") == other for r in fake.requests[1:])
    logs.flush()
    logged = capfd.readouterr()
    assert K1 not in logged.out + logged.err and K2 not in logged.out + logged.err
    assert "multi#" in logged.out  # the access lines name the key's upstream, not the key


async def test_readyz_lists_each_key_upstream(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    fake = await fakes("m")
    up = {
        "provider": "openai",
        "base_url": fake.base_url,
        "credential": ["env:TEST_K1", "env:TEST_K2"],
    }
    gw = await gateway(base_config({"m": up}, {"chat": {"tiers": [{"m": 1}]}}))

    async with aiohttp.ClientSession() as s, s.get(gw.url + "/readyz") as r:
        body = await r.text()
    assert '"m#1"' in body and '"m#2"' in body
    assert K1 not in body and K2 not in body
