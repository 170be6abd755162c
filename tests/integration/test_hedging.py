"""Hedged requests through the real server against fake upstreams on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, post_chat, upstream

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider
from proxy.ops import logs

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
STREAM = {**CHAT, "stream": True}


def hedged(slow: FakeProvider, fast: FakeProvider, **hedge: object) -> dict[str, object]:
    return base_config(
        {"slow": upstream(slow), "fast": upstream(fast)},
        {"chat": {"tiers": [{"slow": 1}, {"fast": 1}], "hedge": hedge}},
    )


async def settled(fake: FakeProvider, disconnects: int) -> None:
    for _ in range(100):
        if len(fake.disconnects) >= disconnects:
            return
        await asyncio.sleep(0.01)


async def test_slow_upstream_is_hedged_and_its_connection_closed(
    fakes: FakeFactory, gateway: GatewayFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    slow = await fakes("slow", default=Behaviour(latency_s=3.0))
    fast = await fakes("fast", default=Behaviour(latency_s=0.05))
    gw = await gateway(hedged(slow, fast, after_ms=200))
    started = time.monotonic()
    status, headers, body = await post_chat(gw.url, CHAT)
    took = time.monotonic() - started
    assert status == 200
    assert orjson.loads(body)["model"] == "fast-model"
    assert (headers["x-gateway-upstream"], headers["x-gateway-attempts"]) == ("fast", "2")
    assert headers["x-gateway-hedge"] == "won"
    assert 0.25 <= took < 1.0  # about after_ms + the fast upstream's TTFB, not 3 s
    await settled(slow, 1)
    assert len(slow.disconnects) == 1  # the slow attempt's connection was closed at once
    assert slow.inflight == 0
    logs.flush()
    lines = [orjson.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    access = [x for x in lines if x["event"] == "access"]
    assert [(x["upstream"], x["attempts"], x["hedge"]) for x in access] == [("fast", 2, "won")]
    assert [x["upstream"] for x in lines if x["event"] == "hedge_cancelled"] == ["slow"]


async def test_hedged_stream_relays_the_winner_only(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    slow = await fakes("slow", default=Behaviour(ttft_s=3.0))
    fast = await fakes("fast", default=Behaviour(chunks=4))
    gw = await gateway(hedged(slow, fast, after_ms=150))
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(STREAM)) as r,
    ):
        text = (await r.read()).decode()
        assert r.status == 200 and r.headers["x-gateway-upstream"] == "fast"
    assert text.count("fast-model") >= 4 and text.rstrip().endswith("data: [DONE]")
    assert "slow-model" not in text
    await settled(slow, 1)
    assert len(slow.disconnects) == 1


async def test_hedge_budget_holds_under_concurrent_load(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    slow = await fakes("slow", default=Behaviour(latency_s=0.3))
    fast = await fakes("fast", default=Behaviour(latency_s=0.01))
    gw = await gateway(hedged(slow, fast, after_ms=50, budget_pct=10, min_per_minute=2))
    results = await asyncio.gather(*(post_chat(gw.url, CHAT) for _ in range(40)))
    assert all(status == 200 for status, _, _ in results)
    hedges = sum("x-gateway-hedge" in headers for _, headers, _ in results)
    # requests are counted as they arrive, so the 10% share grows with the load: 2 .. 4
    assert 2 <= hedges <= 4
    assert len(fast.requests) == hedges


async def test_fast_answers_send_no_hedge(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    slow = await fakes("slow")
    fast = await fakes("fast")
    gw = await gateway(
        hedged(slow, fast, after="p95", floor_ms=500)
    )  # 2 s before 8 samples: no load makes it
    for _ in range(5):
        status, headers, _ = await post_chat(gw.url, CHAT)
        assert status == 200 and "x-gateway-hedge" not in headers
    assert len(fast.requests) == 0
