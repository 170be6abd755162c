"""The response cache on Redis: shared by two gateways, with a TTL, and a Redis gone is a miss."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from conftest import FakeFactory, GatewayFactory, base_config, upstream
from integration.test_response_cache import BODY, content_of, send
from redis.asyncio import Redis

from proxy.cache.redisstore import PAUSE_S
from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider

if TYPE_CHECKING:
    from integration.redis_fixtures import RedisServer

pytest_plugins = ("integration.redis_fixtures",)


def redis_cache_config(fake: FakeProvider, url: str, prefix: str) -> dict[str, object]:
    route = {"tiers": [{"a": 1}], "cache": {"ttl_s": 30}}
    cfg = base_config({"a": upstream(fake)}, {"chat": route})
    cfg["state"] = {"backend": "redis", "url": url, "prefix": prefix, "timeout_ms": 300}
    return cfg


async def _stored(client: Redis, prefix: str) -> list[str]:
    for _ in range(100):
        keys = [k async for k in client.scan_iter(match=f"{prefix}c:*")]
        if keys:
            return keys
        await asyncio.sleep(0.02)
    return []


async def test_two_gateways_share_entries_through_redis(
    fakes: FakeFactory,
    gateway: GatewayFactory,
    redis_base_url: str,
    redis_prefix: str,
    redis_client: Redis,
) -> None:
    a = await fakes("a", default=Behaviour(chunks=4))
    cfg = redis_cache_config(a, redis_base_url, redis_prefix)
    one, two = await gateway(cfg), await gateway(cfg)
    body = {**BODY, "stream": True}
    _, headers, original = await send(one.url, body)
    assert headers["x-gateway-cache"] == "miss"
    (key,) = await _stored(redis_client, redis_prefix)
    ttl_ms = await redis_client.pttl(key)
    assert 25_000 < ttl_ms <= 30_000
    _, headers, replay = await send(two.url, body)
    assert headers["x-gateway-cache"] == "hit"
    assert replay == original  # the same chunks, from the other process
    _, headers, whole = await send(two.url, BODY)
    assert headers["x-gateway-cache"] == "hit"
    assert content_of(original) in b"".join(whole).decode()
    assert len(a.requests) == 1


async def test_redis_down_means_misses_not_errors(
    fakes: FakeFactory, gateway: GatewayFactory, own_redis: RedisServer, redis_prefix: str
) -> None:
    a = await fakes("a")
    gw = await gateway(redis_cache_config(a, own_redis.url, redis_prefix))
    await send(gw.url)
    client = Redis.from_url(own_redis.url)
    try:
        assert await _stored(client, redis_prefix)
    finally:
        await client.aclose()
    _, headers, _ = await send(gw.url)
    assert headers["x-gateway-cache"] == "hit"
    own_redis.stop()
    for _ in range(3):
        status, headers, _ = await send(gw.url)
        assert (status, headers["x-gateway-cache"]) == (200, "miss")
    assert len(a.requests) == 4
    own_redis.start_again()  # empty: no persistence
    await asyncio.sleep(PAUSE_S + 0.1)  # the store leaves a failed Redis alone this long
    client = Redis.from_url(own_redis.url)
    try:
        _, headers, _ = await send(gw.url)
        assert headers["x-gateway-cache"] == "miss"
        assert await _stored(client, redis_prefix)
    finally:
        await client.aclose()
    _, headers, _ = await send(gw.url)
    assert headers["x-gateway-cache"] == "hit"
