"""Keepalive comments while a committed stream is silent; the idle timeout still ends it."""

from __future__ import annotations

import aiohttp
import orjson
from conftest import FakeFactory, GatewayFactory, base_config, upstream

from proxy.fake.behaviour import Behaviour

CHAT = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
BOUND = aiohttp.ClientTimeout(total=10)


async def stream(url: str) -> bytes:
    async with (
        aiohttp.ClientSession(timeout=BOUND) as s,
        s.post(url + "/v1/chat/completions", data=orjson.dumps(CHAT)) as r,
    ):
        assert r.status == 200
        return await r.read()


async def test_silent_stream_gets_keepalive_comments_between_events(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    fake = await fakes("slow", default=Behaviour(chunks=3, chunk_delay_s=0.5))
    gw = await gateway(
        base_config({"u": upstream(fake)}, {"chat": {"tiers": [{"u": 1}], "keepalive_s": 0.1}})
    )
    body = await stream(gw.url)
    assert body.count(b": keepalive\n\n") >= 4
    # Every comment sits between two whole events: the data events are intact.
    events = [e for e in body.split(b"\n\n") if e]
    assert all(e == b": keepalive" or e.startswith(b"data: ") for e in events)
    texts = [orjson.loads(e[6:]) for e in events if e.startswith(b"data: {")]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in texts if c["choices"])
    assert body.endswith(b"data: [DONE]\n\n")


async def test_no_keepalives_unless_configured(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    fake = await fakes("slow", default=Behaviour(chunks=2, chunk_delay_s=0.4))
    gw = await gateway(base_config({"u": upstream(fake)}, {"chat": {"tiers": [{"u": 1}]}}))
    body = await stream(gw.url)
    assert b"keepalive" not in body and body.endswith(b"data: [DONE]\n\n")


async def test_the_idle_timeout_still_ends_a_dead_stream(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    fake = await fakes("dead", default=Behaviour(chunks=3, chunk_delay_s=30))
    cfg = base_config({"u": upstream(fake)}, {"chat": {"tiers": [{"u": 1}], "keepalive_s": 0.1}})
    cfg["defaults"] = {"ttfb_timeout_s": 5, "idle_timeout_s": 0.6, "connect_timeout_s": 2}
    gw = await gateway(cfg)
    body = await stream(gw.url)
    assert b": keepalive\n\n" in body
    assert b'"upstream_timeout"' in body
