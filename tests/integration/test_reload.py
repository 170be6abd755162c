"""Reload in-process: atomic swap, broken files refused, stats kept, in-flight requests undisturbed."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, upstream

from proxy.fake.behaviour import Behaviour

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
STREAM = {**CHAT, "stream": True}


async def served_by(url: str, model: str = "chat") -> tuple[int, str | None]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/chat/completions", data=orjson.dumps({**CHAT, "model": model})) as r,
    ):
        await r.read()
        return r.status, r.headers.get("x-gateway-upstream")


async def test_reload_switches_routes_and_keeps_stats(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    config = base_config({"a": upstream(a), "b": upstream(b)}, {"chat": {"tiers": [{"a": 1}]}})
    gw = await gateway(config)
    assert await served_by(gw.url) == (200, "a")
    stats_a = gw.stats("a")
    assert stats_a.ewma_ttfb_s is not None
    config["routes"] = {"chat": {"tiers": [{"b": 1}]}, "other": {"tiers": [{"a": 1}]}}
    gw.write(config)
    assert await gw.reload()
    assert await served_by(gw.url) == (200, "b")
    assert await served_by(gw.url, "other") == (200, "a")
    # a's definition did not change, so its measurements survived the reload.
    assert gw.stats("a") is stats_a
    assert gw.server.store.generation == 2


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[routes.chat\ntiers = ", "TOML syntax"),
        (
            '[upstreams.a]\nbase_url = "http://127.0.0.1:1/v1"\n[routes.chat]\ntiers = [{x = 1}]\n',
            'unknown upstream "x"',
        ),
        ("", "at least one route"),
    ],
)
async def test_broken_reload_keeps_the_running_config(
    fakes: FakeFactory, gateway: GatewayFactory, text: str, fragment: str
) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}}))
    gw.path.write_text(text)
    assert not await gw.reload()
    assert gw.server.store.generation == 1
    assert gw.server.reloader.failures == 1
    assert await served_by(gw.url) == (200, "a")


async def test_inflight_stream_finishes_on_its_snapshot(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=6, chunk_delay_s=0.1))
    b = await fakes("b")
    config = base_config({"a": upstream(a), "b": upstream(b)}, {"chat": {"tiers": [{"a": 1}]}})
    gw = await gateway(config)
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(STREAM))
        first = await r.content.readline()
        assert first.startswith(b"data: ")
        # Remove upstream a and the route's use of it while the stream runs.
        gw.write(base_config({"b": upstream(b)}, {"chat": {"tiers": [{"b": 1}]}}))
        assert await gw.reload()
        rest = await r.read()
        assert rest.rstrip().endswith(b"data: [DONE]")
        r.close()
    assert await served_by(gw.url) == (200, "b")


async def test_drain_lets_streams_finish_then_ends_the_rest(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=3, chunk_delay_s=0.2))
    b = await fakes("b", default=Behaviour(chunks=100, chunk_delay_s=0.2))
    config = base_config(
        {"a": upstream(a), "b": upstream(b)},
        {"short": {"tiers": [{"a": 1}]}, "long": {"tiers": [{"b": 1}]}},
    )
    gw = await gateway(config)

    async def stream(model: str) -> bytes:
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                gw.url + "/v1/chat/completions", data=orjson.dumps({**STREAM, "model": model})
            ) as r,
        ):
            return await r.read()

    short = asyncio.create_task(stream("short"))
    long = asyncio.create_task(stream("long"))
    await asyncio.sleep(0.3)
    await gw.server.shutdown()  # drain_timeout_s = 2 in the test config
    short_body, long_body = await short, await long
    assert short_body.rstrip().endswith(b"data: [DONE]")
    last = long_body.rstrip().split(b"\n\n")[-1]
    assert orjson.loads(last[len(b"data: ") :])["error"]["code"] == "server_shutting_down"
    assert b.disconnects, "the long stream's upstream attempt was not cancelled"


async def test_drain_deadline_answers_waiting_requests_with_503(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(fault="hang"))
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}}))

    async def ask() -> tuple[int, bytes, str | None]:
        async with (
            aiohttp.ClientSession() as s,
            s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(CHAT)) as r,
        ):
            return r.status, await r.read(), r.headers.get("Retry-After")

    waiting = asyncio.ensure_future(ask())
    await asyncio.sleep(0.3)
    await gw.server.shutdown()  # drain_timeout_s = 2: the upstream never answers
    status, body, retry_after = await waiting
    assert status == 503
    assert orjson.loads(body)["error"]["code"] == "server_shutting_down"
    assert retry_after == "1"
    assert a.disconnects, "the hanging upstream attempt was not cancelled"
