"""A 429 pause and an ejection seen by one gateway reach another on the same Redis."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from conftest import FakeFactory, GatewayFactory, InProcessGateway, base_config, post_chat, upstream

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider
from proxy.routing.stats import Health

pytest_plugins = ("integration.redis_fixtures",)

BODY = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def fleet_config(fake: FakeProvider, url: str, prefix: str, **up: object) -> dict[str, object]:
    cfg = base_config({"a": upstream(fake, **up)}, {"chat": {"tiers": [{"a": 1}]}})
    cfg["state"] = {"backend": "redis", "url": url, "prefix": prefix}
    return cfg


async def subscribed(*gws: InProcessGateway) -> None:
    for gw in gws:
        fleet = gw.server.fleet
        assert fleet is not None
        await asyncio.wait_for(fleet.subscribed.wait(), 5)


async def wait_health(gw: InProcessGateway, health: Health, timeout_s: float = 1.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if gw.stats("a").health(time.monotonic()) is health:
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    raise AssertionError(f"not {health} within {timeout_s}s")


async def test_a_429_on_one_gateway_pauses_the_upstream_on_the_other(
    tmp_path: Path,
    fakes: FakeFactory,
    gateway: GatewayFactory,
    redis_base_url: str,
    redis_prefix: str,
) -> None:
    a = await fakes("a")
    cfg = fleet_config(a, redis_base_url, redis_prefix)
    one, two = await gateway(cfg), await gateway(cfg)
    await subscribed(one, two)
    a.script(Behaviour(status=429, retry_after="30"))
    status, _, _ = await post_chat(one.url, BODY)
    assert status == 429
    assert len(a.requests) == 1
    took = await wait_health(two, Health.RATE_LIMITED)
    assert took < 1.0
    status, headers, _ = await post_chat(two.url, BODY)
    assert status == 429  # the gateway answers for the paused upstream
    assert int(headers["Retry-After"]) >= 25
    assert len(a.requests) == 1  # never tried by the second gateway


async def test_an_ejection_on_one_gateway_ejects_on_the_other(
    tmp_path: Path,
    fakes: FakeFactory,
    gateway: GatewayFactory,
    redis_base_url: str,
    redis_prefix: str,
) -> None:
    a = await fakes("a", default=Behaviour(status=503))
    cfg = fleet_config(a, redis_base_url, redis_prefix, ejection={"consecutive_failures": 2})
    one, two = await gateway(cfg), await gateway(cfg)
    await subscribed(one, two)
    for _ in range(2):
        await post_chat(one.url, BODY)
    assert one.stats("a").health(time.monotonic()) is Health.EJECTED
    await wait_health(two, Health.EJECTED)
    assert two.stats("a").ejections == 0
