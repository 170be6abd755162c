"""Large request bodies: forwarded byte for byte from one buffer, bounded all together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, InProcessGateway, base_config, upstream

from proxy.fake.behaviour import Behaviour

MIB = 2**20


def big_body(mib: float, *, stream: bool = False, model: str = "chat") -> bytes:
    filler = "QUJD" * int(mib * MIB / 4)
    return orjson.dumps(
        {
            "messages": [{"role": "user", "content": [{"type": "text", "text": filler}]}],
            "tools": [{"type": "function", "function": {"parameters": {"model": "nested"}}}],
            "model": model,
            "stream": stream,
        }
    )


async def post(
    s: aiohttp.ClientSession, url: str, data: bytes | AsyncIterator[bytes]
) -> tuple[int, dict[str, str], bytes]:
    async with s.post(url + "/v1/chat/completions", data=data) as r:
        return r.status, dict(r.headers), await r.read()


@pytest.mark.parametrize("mib", [0.5, 3])  # pieces in one write; pieces in 1 MiB slices
async def test_a_large_body_reaches_the_upstream_identical_but_for_the_model(
    fakes: FakeFactory, gateway: GatewayFactory, mib: float
) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}}))
    body = big_body(mib)
    async with aiohttp.ClientSession() as s:
        status, _, _ = await post(s, gw.url, body)
        assert status == 200
        stream_status, _, streamed = await post(s, gw.url, big_body(mib, stream=True))
        assert stream_status == 200 and streamed.endswith(b"data: [DONE]\n\n")
    sent, sent_stream = a.requests[0].body, a.requests[1].body
    # The top-level model is spliced; the nested "model" and every other byte are untouched.
    assert sent == body.replace(b'"model":"chat"', b'"model":"a-model"')
    assert orjson.loads(sent_stream)["stream_options"] == {"include_usage": True}
    assert gw_bodies_held(gw) == 0


def gw_bodies_held(gw: InProcessGateway) -> int:
    """Request-body bytes the gateway counts as held right now."""
    runner = gw.server.runner
    assert runner is not None
    return runner.gateway.bodies.held


async def test_large_bodies_beyond_the_inflight_bound_get_503_small_ones_pass(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    slow = await fakes("slow", Behaviour(latency_s=1.0))
    config = base_config({"slow": upstream(slow)}, {"chat": {"tiers": [{"slow": 1}]}})
    config["server"] = {**config["server"], "max_inflight_body_mb": 5}  # type: ignore[dict-item]
    gw = await gateway(config)
    async with aiohttp.ClientSession() as s:
        first = asyncio.create_task(post(s, gw.url, big_body(3)))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if gw_bodies_held(gw) > 0:
                break
        assert gw_bodies_held(gw) > 3 * MIB  # the first body is held while its upstream thinks

        status, headers, payload = await post(s, gw.url, big_body(3))  # 3 + 3 > 5 MiB
        assert status == 503
        assert headers["Retry-After"] == "1"
        assert orjson.loads(payload)["error"]["code"] == "server_overloaded"

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: refused on the way
            body = big_body(3)
            for at in range(0, len(body), 256 * 1024):
                yield body[at : at + 256 * 1024]

        status, _, payload = await post(s, gw.url, chunked())
        assert status == 503

        small = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        assert (await post(s, gw.url, small))[0] == 200  # small bodies are never refused
        assert (await first)[0] == 200
    assert gw_bodies_held(gw) == 0
    async with aiohttp.ClientSession() as s:
        assert (await post(s, gw.url, big_body(3)))[0] == 200  # room again
