"""Limits and budgets shared through Redis by two in-process gateways, and Redis going away."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import FakeFactory, GatewayFactory, upstream
from integration.test_governance import DEAR, chat, config_for, error_of, make_keys
from redis.asyncio import Redis

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider
from proxy.state.shared import SharedState

if TYPE_CHECKING:
    from integration.redis_fixtures import RedisServer

pytest_plugins = ("integration.redis_fixtures",)


def redis_config(fake: FakeProvider, url: str, prefix: str, **state: object) -> dict[str, object]:
    cfg: dict[str, object] = config_for(upstream(fake, price=DEAR))
    cfg["state"] = {"backend": "redis", "url": url, "prefix": prefix, **state}
    return cfg


async def test_two_gateways_on_one_redis_admit_the_budget_once(
    tmp_path: Path,
    fakes: FakeFactory,
    gateway: GatewayFactory,
    redis_base_url: str,
    redis_prefix: str,
    redis_client: Redis,
) -> None:
    a = await fakes("a", default=Behaviour(latency_s=0.3, chunks=1))
    keys = make_keys(tmp_path, k={"usd_total": 10.0})
    cfg = redis_config(a, redis_base_url, redis_prefix)
    gws = [await gateway(cfg), await gateway(cfg)]
    results = await asyncio.gather(*(chat(gws[i % 2].url, keys["k"]) for i in range(50)))
    statuses = [s for s, _, _ in results]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 40
    refused = next(r for r in results if r[0] == 429)
    assert error_of(refused[2])["code"] == "budget_exceeded"
    assert len(a.requests) == 10
    spent = await redis_client.hget(f"{redis_prefix}s:key:k", "u:total")
    assert spent is not None
    assert float(spent) == pytest.approx(10.0)  # settled: one output token = 1 USD each


async def test_rpm_holds_across_two_gateways(
    tmp_path: Path,
    fakes: FakeFactory,
    gateway: GatewayFactory,
    redis_base_url: str,
    redis_prefix: str,
    redis_client: Redis,
) -> None:
    a = await fakes("a")
    keys = make_keys(tmp_path, k={"rpm": 4})
    cfg = redis_config(a, redis_base_url, redis_prefix)
    gws = [await gateway(cfg), await gateway(cfg)]
    statuses = [(await chat(gws[i % 2].url, keys["k"]))[0] for i in range(8)]
    assert statuses == [200] * 4 + [429] * 4
    status, headers, body = await chat(gws[0].url, keys["k"])
    assert error_of(body)["code"] == "rate_limit_exceeded"
    assert int(headers["Retry-After"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "4"


async def test_redis_down_closed_answers_503_then_recovers(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory, own_redis: RedisServer
) -> None:
    a = await fakes("a")
    keys = make_keys(tmp_path, k={"usd_total": 100.0}, free={})
    cfg = redis_config(a, own_redis.url, "t:", timeout_ms=200)
    gw = await gateway(cfg)
    assert (await chat(gw.url, keys["k"]))[0] == 200
    own_redis.stop()
    status, headers, body = await chat(gw.url, keys["k"])
    assert status == 503
    assert error_of(body)["code"] == "state_unavailable"
    assert int(headers["Retry-After"]) >= 1
    assert (await chat(gw.url, keys["free"]))[0] == 200  # no limit: no Redis needed
    own_redis.start_again()
    for _ in range(50):
        await asyncio.sleep(0.1)
        status = (await chat(gw.url, keys["k"]))[0]
        if status == 200:
            break
    assert status == 200
    state = gw.server.governor.state
    assert isinstance(state, SharedState)
    assert not state.down


async def test_redis_down_open_counts_locally_and_reconciles(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory, own_redis: RedisServer
) -> None:
    a = await fakes("a", default=Behaviour(chunks=1))
    keys = make_keys(tmp_path, k={"usd_total": 3.0})
    cfg = redis_config(a, own_redis.url, "t:", timeout_ms=200, on_state_error="open")
    gw = await gateway(cfg)
    assert (await chat(gw.url, keys["k"]))[0] == 200
    own_redis.stop()
    # Still limited while Redis is away: the same budget, counted here (1 USD was spent
    # through Redis, which this process does not see; locally it admits 3 more, never more).
    statuses = [(await chat(gw.url, keys["k"]))[0] for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    own_redis.start_again()
    client = Redis.from_url(own_redis.url, decode_responses=True)
    spent: bytes | str | None = None
    try:
        for _ in range(50):
            await asyncio.sleep(0.1)
            spent = await client.hget("t:s:key:k", "u:total")
            if spent is not None and float(spent) >= 3.0:
                break
        # The restarted Redis lost the first dollar (no persistence here); the three
        # admitted while it was away were added back when it answered again.
        assert spent is not None
        assert float(spent) == pytest.approx(3.0)
    finally:
        await client.aclose()
    assert (await chat(gw.url, keys["k"]))[0] == 429  # 3.0 spent of 3.0 in Redis now
