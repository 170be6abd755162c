"""Two real gateway processes on one Redis: budgets, rpm and Redis going away, end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import orjson
import pytest
from e2e.e2e_harness import (
    FakeStarter,
    GatewayProcess,
    GatewayStarter,
    chat_body,
    config_dict,
    upstream_entry,
    write_config,
)
from e2e.test_governance_e2e import DEAR, new_key

from proxy.fake.behaviour import Behaviour

if TYPE_CHECKING:
    from integration.redis_fixtures import RedisServer

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures", "integration.redis_fixtures")


async def post(url: str, key: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            f"{url}/v1/chat/completions", data=body, headers={"authorization": f"Bearer {key}"}
        ) as r,
    ):
        return r.status, dict(r.headers), await r.read()


async def two_gateways(
    tmp_path: Path,
    spawn_gateway: GatewayStarter,
    fake_url: dict[str, object],
    state: Mapping[str, object],
    keys: Mapping[str, Sequence[str]],
) -> tuple[dict[str, str], list[GatewayProcess]]:
    """The keys are made before the processes start (they do not watch the file here)."""
    path = tmp_path / "gateway.toml"
    cfg = config_dict({"a": fake_url}, {"chat": {"tiers": [{"a": 1}]}})
    cfg["state"] = dict(state)
    write_config(path, cfg)
    made = {name: new_key(path, name, *flags) for name, flags in keys.items()}
    gws = [spawn_gateway(path), spawn_gateway(path)]
    for gw in gws:
        await gw.wait_ready()
    return made, gws


async def test_two_processes_share_a_budget_and_an_rpm(
    tmp_path: Path,
    fake_upstreams: FakeStarter,
    spawn_gateway: GatewayStarter,
    redis_base_url: str,
    redis_prefix: str,
) -> None:
    fake = await fake_upstreams("a", Behaviour(latency_s=0.3, chunks=1))
    state = {"backend": "redis", "url": redis_base_url, "prefix": redis_prefix}
    keys = {"budget": ("--usd-total", "10"), "paced": ("--rpm", "6")}
    made, gws = await two_gateways(
        tmp_path, spawn_gateway, upstream_entry(fake, "m", price=DEAR), state, keys
    )
    budget_key, rpm_key = made["budget"], made["paced"]
    body = chat_body("chat", stream=False, max_tokens=1)
    results = await asyncio.gather(*(post(gws[i % 2].address, budget_key, body) for i in range(50)))
    statuses = [s for s, _, _ in results]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 40
    assert len(fake.requests) == 10
    refused = next(b for s, _, b in results if s == 429)
    assert orjson.loads(refused)["error"]["code"] == "budget_exceeded"
    paced = [(await post(gws[i % 2].address, rpm_key, body))[0] for i in range(10)]
    assert paced == [200] * 6 + [429] * 4


async def test_redis_stopped_mid_run_closed_then_recovers(
    tmp_path: Path,
    fake_upstreams: FakeStarter,
    spawn_gateway: GatewayStarter,
    own_redis: RedisServer,
) -> None:
    fake = await fake_upstreams("a")
    state = {"backend": "redis", "url": "env:GW_TEST_REDIS", "prefix": "fleet:"}
    path = tmp_path / "gateway.toml"
    cfg = config_dict({"a": upstream_entry(fake, "m")}, {"chat": {"tiers": [{"a": 1}]}})
    cfg["state"] = state
    write_config(path, cfg)
    key = new_key(path, "app", "--rpm", "1000")
    env = {"GW_TEST_REDIS": own_redis.url}
    gws = [spawn_gateway(path, env=env), spawn_gateway(path, env=env)]
    for gw in gws:
        await gw.wait_ready()
    body = chat_body("chat", stream=False)
    assert [(await post(gw.address, key, body))[0] for gw in gws] == [200, 200]
    own_redis.stop()
    for gw in gws:
        status, headers, raw = await post(gw.address, key, body)
        assert status == 503
        assert orjson.loads(raw)["error"]["code"] == "state_unavailable"
        assert "Retry-After" in headers
        await gw.wait_event("state_unreachable", timeout_s=5)
    assert own_redis.url not in "".join(gw.output() for gw in gws)
    own_redis.start_again()
    for gw in gws:
        await gw.wait_event("state_recovered", timeout_s=10)
        assert (await post(gw.address, key, body))[0] == 200


async def test_a_429_seen_by_one_process_pauses_the_upstream_on_the_other(
    tmp_path: Path,
    fake_upstreams: FakeStarter,
    spawn_gateway: GatewayStarter,
    redis_base_url: str,
    redis_prefix: str,
) -> None:
    fake = await fake_upstreams("a")
    state = {"backend": "redis", "url": redis_base_url, "prefix": redis_prefix}
    made, gws = await two_gateways(
        tmp_path, spawn_gateway, upstream_entry(fake, "m"), state, {"app": ()}
    )
    key = made["app"]
    body = chat_body("chat", stream=False)
    assert [(await post(gw.address, key, body))[0] for gw in gws] == [200, 200]
    fake.script(Behaviour(status=429, retry_after="30"))
    assert (await post(gws[0].address, key, body))[0] == 429
    await gws[1].wait_event("fleet_signal", timeout_s=1.0)
    status, headers, _ = await post(gws[1].address, key, body)
    assert status == 429
    assert int(headers["Retry-After"]) >= 25
    assert len(fake.requests) == 3  # the second process never tried the paused upstream
