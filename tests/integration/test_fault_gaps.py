"""Upstream faults found by the fault sweep, reproduced against scripted upstreams on 127.0.0.1:
comment-only streams, oversized answers, runaway Retry-After, the last upstream left, JSON
answers to stream requests, Expect: 100-continue, duplicated routing keys."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest
from aiohttp import web
from conftest import FakeFactory, GatewayFactory, base_config, post_chat, upstream

from proxy.fake.behaviour import Behaviour

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
STREAM = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
EVENT = b'data: {"choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RawUpstream:
    """An upstream on 127.0.0.1 answering every request with one handler; counts requests."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests = 0
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        return await self.handler(request)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self.runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"


RawFactory = Callable[[Handler], Awaitable[RawUpstream]]


@pytest.fixture
async def raw() -> AsyncIterator[RawFactory]:
    started: list[RawUpstream] = []

    async def make(handler: Handler) -> RawUpstream:
        up = RawUpstream(handler)
        await up.start()
        started.append(up)
        return up

    yield make
    for up in started:
        assert up.runner is not None
        await up.runner.cleanup()


def sse_answer(*parts: tuple[float, bytes]) -> Handler:
    """A 200 event stream: each part is written after its delay."""

    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for delay, data in parts:
            await asyncio.sleep(delay)
            await resp.write(data)
        await resp.write_eof()
        return resp

    return handle


def keepalives(n: int, every_s: float) -> list[tuple[float, bytes]]:
    return [(every_s, b": keepalive\n\n")] * n


def events_of(body: bytes) -> list[bytes]:
    return [e for e in body.split(b"\n\n") if e]


def route(*names: str, **extra: object) -> dict[str, object]:
    return {"chat": {"tiers": [{n: 1} for n in names], **extra}}


# --- comment-only streams ------------------------------------------------------------------


async def test_a_stream_of_only_comments_fails_over_before_the_commit_point(
    raw: RawFactory, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    silent = await raw(sse_answer(*keepalives(40, 0.1)))
    b = await fakes("b")
    config = base_config(
        {"a": {"base_url": silent.base_url, "ttfb_timeout_s": 0.6}, "b": upstream(b)},
        route("a", "b"),
    )
    gw = await gateway(config)
    started = time.monotonic()
    status, headers, body = await post_chat(gw.url, STREAM)
    assert time.monotonic() - started < 2.5
    assert (status, headers["x-gateway-upstream"], headers["x-gateway-attempts"]) == (
        200,
        "b",
        "2",
    )
    assert b": keepalive" not in body  # nothing of the failed attempt reached the client
    assert events_of(body)[-1] == b"data: [DONE]"
    assert gw.stats("a").failures == 1


async def test_comments_before_the_first_data_are_forwarded_with_it(
    raw: RawFactory, gateway: GatewayFactory
) -> None:
    a = await raw(sse_answer(*keepalives(3, 0.05), (0.05, EVENT), (0.0, b"data: [DONE]\n\n")))
    gw = await gateway(base_config({"a": {"base_url": a.base_url}}, route("a")))
    status, headers, body = await post_chat(gw.url, STREAM)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert body == b": keepalive\n\n" * 3 + EVENT + b"data: [DONE]\n\n"


async def test_after_the_commit_comments_pass_but_do_not_hold_the_stream_open(
    raw: RawFactory, gateway: GatewayFactory
) -> None:
    a = await raw(sse_answer((0.0, EVENT), *keepalives(30, 0.1), (0.0, b"data: [DONE]\n\n")))
    config = base_config({"a": {"base_url": a.base_url, "idle_timeout_s": 0.5}}, route("a"))
    gw = await gateway(config)
    started = time.monotonic()
    status, _, body = await post_chat(gw.url, STREAM)
    assert status == 200
    assert time.monotonic() - started < 2.0  # not the 3 s of keep-alives
    events = events_of(body)
    assert events[0] == EVENT.strip()
    assert b": keepalive" in events  # forwarded while they came
    last = orjson.loads(events[-1][len(b"data: ") :])
    assert last["error"]["code"] == "upstream_timeout"


async def test_comments_between_data_events_within_the_idle_limit_are_harmless(
    raw: RawFactory, gateway: GatewayFactory
) -> None:
    parts = [(0.0, EVENT)]
    for _ in range(4):
        parts += [(0.1, b": keepalive\n\n"), (0.1, EVENT)]
    a = await raw(sse_answer(*parts, (0.0, b"data: [DONE]\n\n")))
    config = base_config({"a": {"base_url": a.base_url, "idle_timeout_s": 0.5}}, route("a"))
    gw = await gateway(config)
    status, _, body = await post_chat(gw.url, STREAM)
    assert status == 200
    assert events_of(body)[-1] == b"data: [DONE]"
    assert body.count(b": keepalive") == 4 and body.count(EVENT) == 5


# --- oversized whole answers ---------------------------------------------------------------


def big_json(size: int, *, chunked: bool) -> Handler:
    payload = b'{"data": "' + b"x" * size + b'"}'

    async def handle(request: web.Request) -> web.StreamResponse:
        if not chunked:
            return web.Response(body=payload, content_type="application/json")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(0, len(payload), 4096):
            await resp.write(payload[i : i + 4096])
        await resp.write_eof()
        return resp

    return handle


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_answer_above_max_response_mb_is_a_502(
    raw: RawFactory, gateway: GatewayFactory, chunked: bool
) -> None:
    a = await raw(big_json(200_000, chunked=chunked))
    b = await raw(big_json(200_000, chunked=chunked))
    config = base_config(
        {"a": {"base_url": a.base_url}, "b": {"base_url": b.base_url}}, route("a", "b")
    )
    config["server"]["max_response_mb"] = 0.1  # type: ignore[index]
    gw = await gateway(config)
    status, headers, body = await post_chat(gw.url, CHAT)
    assert status == 502
    assert orjson.loads(body)["error"]["code"] == "upstream_response_too_large"
    assert headers["x-should-retry"] == "false"
    assert (a.requests, b.requests) == (1, 0)  # another upstream would be as large


async def test_an_answer_within_max_response_mb_passes(
    raw: RawFactory, gateway: GatewayFactory
) -> None:
    a = await raw(big_json(90_000, chunked=True))
    config = base_config({"a": {"base_url": a.base_url}}, route("a"))
    config["server"]["max_response_mb"] = 0.1  # type: ignore[index]
    gw = await gateway(config)
    status, _, body = await post_chat(gw.url, CHAT)
    assert status == 200 and len(body) == 90_000 + 12


# --- a stream request answered with JSON ---------------------------------------------------


async def test_a_json_answer_to_a_stream_request_keeps_its_content_type(
    raw: RawFactory, gateway: GatewayFactory
) -> None:
    answer = b'{"id": "x", "choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}}'

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=answer, content_type="application/json")

    a = await raw(handle)
    gw = await gateway(base_config({"a": {"base_url": a.base_url}}, route("a")))
    status, headers, body = await post_chat(gw.url, STREAM)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert body == answer


# --- the last upstream left ----------------------------------------------------------------


async def test_a_single_upstream_route_retries_a_5xx_on_the_same_upstream(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    a.script(Behaviour(status=500), Behaviour(status=502))
    gw = await gateway(base_config({"a": upstream(a)}, route("a", max_attempts=3)))
    status, headers, _ = await post_chat(gw.url, CHAT)
    assert (status, headers["x-gateway-attempts"]) == (200, "3")
    assert len(a.requests) == 3


async def test_when_the_sibling_is_ejected_the_last_one_is_retried(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    gw = await gateway(
        base_config({"a": upstream(a), "b": upstream(b)}, {"chat": {"tiers": [{"a": 1, "b": 1}]}})
    )
    gw.stats("b").ejected_until = time.monotonic() + 60
    a.script(Behaviour(status=503))
    status, headers, _ = await post_chat(gw.url, CHAT)
    assert (status, headers["x-gateway-upstream"], headers["x-gateway-attempts"]) == (
        200,
        "a",
        "2",
    )
    assert len(b.requests) == 0


# --- runaway Retry-After -------------------------------------------------------------------


async def test_a_day_long_retry_after_is_capped_and_a_reload_clears_it(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    a.script(Behaviour(status=429, retry_after="86400"))
    config = base_config({"a": upstream(a), "b": upstream(b)}, route("a", "b"))
    config["defaults"]["max_rate_limit_pause_s"] = 30  # type: ignore[index]
    gw = await gateway(config)
    status, headers, _ = await post_chat(gw.url, CHAT)
    assert (status, headers["x-gateway-upstream"]) == (200, "b")
    assert 29.0 < gw.stats("a").limited_until - time.monotonic() <= 30.0
    config["upstreams"]["a"]["ttfb_timeout_s"] = 7  # type: ignore[index]
    gw.write(config)
    assert await gw.reload()
    status, headers, _ = await post_chat(gw.url, CHAT)
    assert (status, headers["x-gateway-upstream"]) == (200, "a")


async def test_when_the_pause_ends_one_probe_decides(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    # The probe after the pause is slow: meanwhile every other request goes to b.
    a.script(Behaviour(status=429, retry_after="1"), Behaviour(latency_s=1.0))
    config = base_config(
        {"a": upstream(a), "b": upstream(b)}, {"chat": {"tiers": [{"a": 1}, {"b": 1}]}}
    )
    config["defaults"]["max_rate_limit_pause_s"] = 0.3  # type: ignore[index]
    gw = await gateway(config)
    status, headers, _ = await post_chat(gw.url, CHAT)
    assert (status, headers["x-gateway-upstream"]) == (200, "b")
    await asyncio.sleep(0.35)
    probe = asyncio.create_task(post_chat(gw.url, CHAT))
    await asyncio.sleep(0.2)
    others = await asyncio.gather(*(post_chat(gw.url, CHAT) for _ in range(4)))
    assert [h["x-gateway-upstream"] for _, h, _ in others] == ["b"] * 4
    _, probe_headers, _ = await probe
    assert probe_headers["x-gateway-upstream"] == "a"
    assert len(a.requests) == 2
    _, headers, _ = await post_chat(gw.url, CHAT)
    assert headers["x-gateway-upstream"] == "a"  # the pause is over


# --- request edge ---------------------------------------------------------------------------


async def expect_exchange(url: str, length: int, expect: str = "100-continue") -> bytes:
    """Send headers with `Expect: 100-continue` and no body; what the gateway says first."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {length}\r\nExpect: {expect}\r\n\r\n".encode()
    )
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()


async def test_expect_continue_with_a_too_large_body_gets_413_first(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    config = base_config({"a": upstream(a)}, route("a"))
    config["server"]["max_body_mb"] = 1  # type: ignore[index]
    gw = await gateway(config)
    head = await expect_exchange(gw.url, 2 * 2**20)
    assert head.startswith(b"HTTP/1.1 413")
    assert b"100 Continue" not in head
    assert (await expect_exchange(gw.url, 100)).startswith(b"HTTP/1.1 100 Continue")
    assert (await expect_exchange(gw.url, 100, "magic")).startswith(b"HTTP/1.1 417")


async def test_expect_continue_with_a_body_within_the_cap_is_served(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, route("a")))
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(CHAT), expect100=True) as r,
    ):
        assert r.status == 200


@pytest.mark.parametrize("rewrite", [True, False])
async def test_duplicated_model_and_stream_keys_reach_the_upstream_as_the_gateway_read_them(
    fakes: FakeFactory, gateway: GatewayFactory, rewrite: bool
) -> None:
    a = await fakes("a")
    up = upstream(a) if rewrite else {"base_url": a.base_url}
    gw = await gateway(base_config({"a": up}, route("a")))
    body = (
        b'{"model": "other", "stream": true, "messages": [{"role": "user", "content": "hi"}],'
        b' "model": "chat", "stream": false}'
    )
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.url + "/v1/chat/completions", data=body) as r,
    ):
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/json")  # not a stream
    sent = a.requests[0].body
    assert sent.count(b'"model"') == 1 and sent.count(b'"stream"') == 1
    assert orjson.loads(sent)["stream"] is False
    assert orjson.loads(sent)["model"] == ("a-model" if rewrite else "chat")


async def test_a_duplicated_stream_key_alone_is_collapsed_too(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, route("a")))
    body = b'{"model": "chat", "stream": true, "messages": [{"role": "user", "content": "hi"}], "stream": false}'
    status, headers, _ = await post_chat_bytes(gw.url, body)
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    sent = a.requests[0].body
    assert sent.count(b'"stream"') == 1 and orjson.loads(sent)["stream"] is False


async def post_chat_bytes(url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/chat/completions", data=body) as r,
    ):
        return r.status, dict(r.headers), await r.read()


async def test_events_with_a_loose_content_type_are_still_relayed_as_a_stream(
    raw: RawFactory, gateway: GatewayFactory
) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(request)
        await resp.write(EVENT)
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    a = await raw(handle)
    gw = await gateway(base_config({"a": {"base_url": a.base_url}}, route("a")))
    status, headers, body = await post_chat(gw.url, STREAM)
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert body == EVENT + b"data: [DONE]\n\n"


async def test_comments_pass_while_the_usage_chunk_the_gateway_asked_for_is_hidden(
    raw: RawFactory, gateway: GatewayFactory
) -> None:
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}\n\n'
    a = await raw(
        sse_answer(
            (0.0, b": keepalive\n\n"),
            (0.05, EVENT),
            (0.05, b": keepalive\n\n"),
            (0.0, usage + b"data: [DONE]\n\n"),
        )
    )
    gw = await gateway(base_config({"a": {"base_url": a.base_url}}, route("a")))
    status, _, body = await post_chat(gw.url, {**CHAT, "stream": True})
    assert status == 200
    assert body == b": keepalive\n\n" + EVENT + b": keepalive\n\ndata: [DONE]\n\n"
