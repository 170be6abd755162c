"""Affinity pins shared over Redis: a conversation and a stored response follow across instances."""

from __future__ import annotations

import socket

import aiohttp
import orjson
from conftest import FakeFactory, GatewayFactory, InProcessGateway, base_config, upstream
from redis.asyncio import Redis

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider
from proxy.state.pins import RedisPins

pytest_plugins = ("integration.redis_fixtures",)

BOUND = aiohttp.ClientTimeout(total=10)


def conversation(turn: int, task: str = "the task") -> dict[str, object]:
    msgs: list[dict[str, object]] = [{"role": "user", "content": task}]
    for i in range(turn):
        msgs += [{"role": "assistant", "content": f"a{i}"}, {"role": "user", "content": f"u{i}"}]
    return {"model": "agent", "system": "agent rules", "messages": msgs}


async def post(gw: InProcessGateway, path: str, body: object) -> bytes:
    async with (
        aiohttp.ClientSession(timeout=BOUND) as s,
        s.post(gw.url + path, data=orjson.dumps(body)) as r,
    ):
        assert r.status == 200
        return await r.read()


async def flushed(gw: InProcessGateway) -> None:
    pins = gw.server.balancer.shared_pins
    assert isinstance(pins, RedisPins)
    await pins.drain()


def cfg(fs: list[FakeProvider], url: str, prefix: str) -> dict[str, object]:
    ups: dict[str, object] = {f.name: upstream(f) for f in fs}
    route = {"strategy": "round_robin", "tiers": [{f.name: 1 for f in fs}]}
    config = base_config(ups, {"agent": {**route, "affinity": "prompt_cache"}, "plain": route})
    config["state"] = {"backend": "redis", "url": url, "prefix": prefix}
    return config


async def test_a_second_instance_follows_the_pins_of_the_first(
    fakes: FakeFactory, gateway: GatewayFactory, redis_base_url: str, redis_prefix: str
) -> None:
    fs = [await fakes(n, default=Behaviour(chunks=1)) for n in ("a", "b", "c")]
    one = await gateway(cfg(fs, redis_base_url, redis_prefix))
    two = await gateway(cfg(fs, redis_base_url, redis_prefix))
    # One's rotation moves on first, so the two instances would pick differently on their own.
    await post(one, "/v1/chat/completions", conversation(0, "another task"))
    await post(one, "/v1/chat/completions", conversation(0))
    await flushed(one)
    home = next(f for f in fs if f.requests and b"the task" in f.requests[-1].body)
    assert len(home.requests) == 1
    for turn in range(1, 6):
        await post(two if turn % 2 else one, "/v1/chat/completions", conversation(turn))
    assert len(home.requests) == 6
    # A stored response too: created through one, continued through two.
    created = orjson.loads(await post(one, "/v1/responses", {"model": "plain", "input": "hi"}))
    await flushed(one)
    where = next(f for f in fs if f.requests and f.requests[-1].path.endswith("/responses"))
    before = len(where.requests)
    follow = {"model": "plain", "input": "more", "previous_response_id": created["id"]}
    for _ in range(3):
        await post(two, "/v1/responses", follow)
    assert len(where.requests) == before + 3


async def test_an_unreachable_redis_costs_affinity_not_requests() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    client = Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
    pins = RedisPins(client, "t:", timeout_s=0.5)
    try:
        assert await pins.fetch("p:abc") is None
        pins.push("p:abc", "a", 60)
        pins.forget("p:abc")
        await pins.drain()  # failures are swallowed (and logged once)
    finally:
        await client.aclose()
