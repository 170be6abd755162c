"""Active health checks through the in-process gateway: eject before users, recover early."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, post_chat, upstream

from proxy.fake.behaviour import Behaviour

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}


async def until(cond: Callable[[], bool], timeout_s: float = 6.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_probe_ejects_then_ends_the_ejection(
    fakes: FakeFactory, gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_KEY", "sk-probe-secret")
    a = await fakes("a", default=Behaviour(status=503))
    b = await fakes("b")
    check = {"every_s": 1, "failures": 2, "timeout_s": 1}
    ups: dict[str, object] = {
        "a": upstream(
            a, credential="env:PROBE_KEY", health=check, ejection={"base_s": 60, "max_s": 60}
        ),
        "b": upstream(b),
    }
    cfg = base_config(ups, {"chat": {"tiers": [{"a": 1, "b": 1}]}})
    cfg["admin"] = {"listen": "127.0.0.1:0", "loopback_without_token": True}
    gw = await gateway(cfg)
    await until(lambda: gw.stats("a").ejected_until > time.monotonic())
    async with (
        aiohttp.ClientSession() as s,
        s.get(gw.server.admin_address + "/admin/status") as r,
    ):
        doc = orjson.loads(await r.read())
    seen = doc["upstreams"]["a"]["health_check"]
    assert seen["last_ok"] is False and seen["failed_streak"] >= 2
    assert doc["upstreams"]["a"]["state"] == "ejected"
    assert "health_check" not in doc["upstreams"]["b"]
    assert "sk-probe-secret" not in orjson.dumps(doc).decode()
    probes = [r for r in a.requests if r.method == "GET"]
    assert len(probes) >= 2 and all(r.path == "/v1/models" for r in probes)
    assert dict(probes[0].headers)["Authorization"] == "Bearer sk-probe-secret"
    assert not [r for r in a.requests if r.method == "POST"]  # never a billed completion
    for _ in range(4):  # users never meet the broken upstream
        status, headers, _ = await post_chat(gw.url, CHAT)
        assert (status, headers["x-gateway-upstream"]) == (200, "b")
    a.default = Behaviour()
    await until(lambda: gw.stats("a").ejected_until == 0.0)  # long before the 60 s ejection
    names = set()
    for _ in range(4):
        status, headers, _ = await post_chat(gw.url, CHAT)
        names.add(headers["x-gateway-upstream"])
    assert names == {"a", "b"}
    assert not [r for r in b.requests if r.method == "GET"]  # b has no check configured


async def test_reload_adds_and_drops_checks(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    cfg = base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}})
    gw = await gateway(cfg)
    await asyncio.sleep(1.2)
    assert not a.requests  # no `health`: nothing is probed
    cfg["upstreams"]["a"]["health"] = {"every_s": 1}  # type: ignore[index]
    gw.write(cfg)
    assert await gw.reload()
    await until(lambda: any(r.method == "GET" for r in a.requests))
    del cfg["upstreams"]["a"]["health"]  # type: ignore[index]
    gw.write(cfg)
    assert await gw.reload()
    await asyncio.sleep(0.1)
    seen = len(a.requests)
    await asyncio.sleep(2.2)
    assert len(a.requests) == seen
