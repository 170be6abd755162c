"""Streams through the gateway: byte-for-byte relay, the commit point, disconnects, deadlines."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import openai
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, post_chat, upstream
from multidict import CIMultiDict

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider
from proxy.ops import logs

STREAM = {
    "model": "chat",
    "messages": [{"role": "user", "content": "hello"}],
    "stream": True,
    "stream_options": {"include_usage": True},
}


def one_route(*fakes: FakeProvider, **route: object) -> dict[str, object]:
    ups: dict[str, object] = {f.name: upstream(f) for f in fakes}
    return base_config(ups, {"chat": {"tiers": [{n: 1} for n in ups], **route}})


async def read_stream(url: str, body: object = STREAM) -> tuple[int, CIMultiDict[str], bytes]:
    return await post_chat(url, body)


async def test_stream_bytes_are_relayed_unchanged(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=6))
    gw = await gateway(one_route(a))
    status, headers, body = await read_stream(gw.url)
    direct_status, _, direct = await read_stream(a.base_url[: -len("/v1")])
    assert status == direct_status == 200
    assert headers["Content-Type"] == "text/event-stream"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    # Same events in the same framing; only ids and timestamps differ between two answers.
    events = [e for e in body.split(b"\n\n") if e]
    assert len(events) == len([e for e in direct.split(b"\n\n") if e])
    assert events[-1] == b"data: [DONE]"
    usage = orjson.loads(events[-2][len(b"data: ") :])
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 6
    # The client's model name was rewritten to the upstream model id.
    assert orjson.loads(a.requests[0].body)["model"] == "a-model"


async def test_first_chunk_arrives_before_the_upstream_sends_the_second(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=3, chunk_delay_s=0.6))
    gw = await gateway(one_route(a))
    arrivals: list[float] = []
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(STREAM)) as r,
    ):
        started = time.monotonic()
        async for _line in r.content:
            if _line.startswith(b"data: "):
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 4
    # Unbuffered: each content chunk shows up ~0.6 s after the previous one, not all at the end.
    assert arrivals[1] < 0.45
    assert arrivals[2] - arrivals[1] > 0.4


async def test_mid_stream_reset_ends_with_error_event_and_no_retry(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(fault="reset_mid_stream", fault_after_chunks=2))
    b = await fakes("b")
    gw = await gateway(one_route(a, b))
    status, _, body = await read_stream(gw.url)
    assert status == 200
    events = [e for e in body.split(b"\n\n") if e]
    last = orjson.loads(events[-1][len(b"data: ") :])
    assert last["error"]["code"] == "upstream_error"
    assert set(last["error"]) == {"message", "type", "param", "code"}
    assert len(b.requests) == 0  # after the commit point: never a retry


async def test_openai_sdk_raises_on_the_mid_stream_error(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(fault="reset_mid_stream", fault_after_chunks=2))
    gw = await gateway(one_route(a))
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    stream = await client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    seen = 0
    try:
        async for _chunk in stream:
            seen += 1
        raise AssertionError("the stream should have raised")
    except openai.APIError as exc:
        assert "mid-stream" in exc.message
    assert seen >= 2
    await client.close()


async def test_idle_upstream_mid_stream_is_ended(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=3, chunk_delay_s=3.0))
    config = one_route(a)
    config["upstreams"]["a"]["idle_timeout_s"] = 0.4  # type: ignore[index]
    gw = await gateway(config)
    started = time.monotonic()
    status, _, body = await read_stream(gw.url)
    assert status == 200
    assert time.monotonic() - started < 2.0
    last = orjson.loads([e for e in body.split(b"\n\n") if e][-1][len(b"data: ") :])
    assert last["error"]["code"] == "upstream_timeout"


async def test_client_disconnect_cancels_the_upstream(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=50, chunk_delay_s=0.2))
    gw = await gateway(one_route(a))
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(STREAM))
        await r.content.readline()
        gone_at = time.monotonic()
        r.close()
    for _ in range(100):
        if a.disconnects:
            break
        await asyncio.sleep(0.02)
    assert a.disconnects, "the upstream never saw the gateway hang up"
    assert a.disconnects[0] - gone_at < 1.0
    assert gw.server.drain.inflight == 0


async def test_client_disconnect_before_headers_cancels_the_upstream(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(fault="hang"))
    gw = await gateway(one_route(a))
    gone_at = 0.0
    async with aiohttp.ClientSession() as s:
        try:
            async with asyncio.timeout(0.5):
                await s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(STREAM))
        except TimeoutError:
            gone_at = time.monotonic()
    assert gone_at > 0
    for _ in range(100):
        if a.disconnects:
            break
        await asyncio.sleep(0.02)
    assert a.disconnects and a.disconnects[0] - gone_at < 1.0
    stats = gw.stats("a")
    assert stats.inflight == 0 and stats.failures == 0


async def test_openai_sdk_stream_and_json(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a", default=Behaviour(chunks=4, text="one two three four"))
    gw = await gateway(one_route(a))
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key="k", max_retries=0)
    stream = await client.chat.completions.create(
        model="chat",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            text += chunk.choices[0].delta.content
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == "one two three four"
    assert usage is not None and usage.completion_tokens == 4
    resp = await client.chat.completions.with_raw_response.create(
        model="chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert resp.headers["x-gateway-upstream"] == "a"
    completion = resp.parse()
    assert completion.choices[0].message.content == "one two three four"
    assert completion.model == "a-model"
    emb = await client.embeddings.create(model="chat", input=["x", "y"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) > 0
    models = await client.models.list()
    assert [m.id for m in models.data] == ["chat"]
    await client.close()


async def test_gateway_asks_for_usage_and_hides_it_from_clients_that_did_not(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=4))
    gw = await gateway(one_route(a))
    plain = {k: v for k, v in STREAM.items() if k != "stream_options"}
    status, _, body = await read_stream(gw.url, plain)
    assert status == 200
    sent = orjson.loads(a.requests[-1].body)
    assert sent["stream_options"] == {"include_usage": True}
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert not any(b'"choices":[]' in e for e in events)
    assert b'"finish_reason":"stop"' in events[-2]
    # Every other byte is the upstream's: the same events as a direct call, minus usage.
    direct = (await read_stream(a.base_url[: -len("/v1")], {**plain, "model": "a-model"}))[2]
    assert len([e for e in direct.split(b"\n\n") if e]) == len(events)


async def test_stream_usage_off_leaves_the_body_alone(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    config = one_route(a)
    config["upstreams"]["a"]["stream_usage"] = False  # type: ignore[index]
    gw = await gateway(config)
    plain = {k: v for k, v in STREAM.items() if k != "stream_options"}
    assert (await read_stream(gw.url, plain))[0] == 200
    assert "stream_options" not in orjson.loads(a.requests[-1].body)


async def test_client_gone_is_logged_as_499_not_an_error(
    fakes: FakeFactory, gateway: GatewayFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    a = await fakes("a", default=Behaviour(chunks=30, chunk_delay_s=0.05))
    gw = await gateway(one_route(a))
    async with aiohttp.ClientSession() as s:
        r = await s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(STREAM))
        await r.content.readline()
        r.close()
    for _ in range(100):
        if gw.server.drain.inflight == 0:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    logs.flush()
    lines = [orjson.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    access = [x for x in lines if x["event"] == "access"]
    assert [(x["status"], x["failure"]) for x in access] == [(499, "client_gone")]
    assert not [x for x in lines if x["level"] == "error"]


async def test_an_ejection_caused_by_a_broken_stream_is_logged(
    fakes: FakeFactory, gateway: GatewayFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    """After the commit point the failure still counts, and its health transition is logged."""
    a = await fakes("a", default=Behaviour(fault="reset_mid_stream", fault_after_chunks=2))
    config = one_route(a)
    config["upstreams"]["a"]["ejection"] = {"consecutive_failures": 1}  # type: ignore[index]
    gw = await gateway(config)
    status, _, body = await read_stream(gw.url)
    assert status == 200 and b'"upstream_error"' in body
    logs.flush()
    lines = [orjson.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    ejected = [x for x in lines if x["event"] == "upstream_ejected"]
    assert [x["upstream"] for x in ejected] == ["a"]
    access = [x for x in lines if x["event"] == "access"]
    assert [(x["status"], x["failure"]) for x in access] == [(200, "stream_broken")]
    assert gw.stats("a").ejected_until > 0
