"""The response cache through the in-process gateway: hit/miss/skip, replay, single-flight."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from conftest import FakeFactory, GatewayFactory, base_config, upstream
from integration.test_governance import make_keys
from multidict import CIMultiDict

from proxy.fake.behaviour import Behaviour

BODY: dict[str, Any] = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


def config(fake_cfg: dict[str, object], **cache: object) -> dict[str, object]:
    route: dict[str, object] = {"tiers": [{"a": 1}], "cache": cache or {"ttl_s": 60}}
    return base_config({"a": fake_cfg}, {"chat": route, "plain": {"tiers": [{"a": 1}]}})


async def send(
    url: str,
    body: dict[str, Any] | bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, CIMultiDict[str], list[bytes]]:
    """Status, headers and the body as its HTTP chunks (so stream chunking can be compared)."""
    data = body if isinstance(body, bytes) else orjson.dumps(body or BODY)
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/chat/completions", data=data, headers=headers or {}) as r,
    ):
        chunks: list[bytes] = []
        part = b""
        async for data_, end in r.content.iter_chunks():
            part += data_
            if end:
                chunks.append(part)
                part = b""
        if part:
            chunks.append(part)
        return r.status, r.headers.copy(), chunks


def stream_body(**extra: Any) -> dict[str, Any]:
    return {**BODY, "stream": True, **extra}


def content_of(chunks: list[bytes]) -> str:
    text = ""
    for line in b"".join(chunks).split(b"\n"):
        if line.startswith(b"data: {"):
            for c in orjson.loads(line[6:])["choices"]:
                text += c["delta"].get("content") or ""
    return text


async def test_miss_then_hit_and_skip_headers(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    gw = await gateway(config(upstream(a)))
    status, headers, first = await send(gw.url)
    assert status == 200 and headers["x-gateway-cache"] == "miss"
    status, headers, again = await send(gw.url)
    assert status == 200 and headers["x-gateway-cache"] == "hit"
    assert b"".join(again) == b"".join(first)
    assert int(headers["Content-Length"]) == len(b"".join(first))
    assert len(a.requests) == 1
    # Key order and spacing do not split the key.
    spaced = b'{ "messages" : [ {"content": "hi", "role": "user"} ],\n "model": "chat" }'
    _, headers, _ = await send(gw.url, spaced)
    assert headers["x-gateway-cache"] == "hit"
    # Asked not to read: a miss that goes upstream; asked not to store: skip.
    _, headers, _ = await send(gw.url, headers={"Cache-Control": "no-cache"})
    assert headers["x-gateway-cache"] == "miss"
    _, headers, _ = await send(gw.url, headers={"x-gateway-cache": "skip"})
    assert headers["x-gateway-cache"] == "skip"
    _, headers, _ = await send(gw.url, headers={"Cache-Control": "no-store"})
    assert headers["x-gateway-cache"] == "skip"
    assert len(a.requests) == 4
    # A route without cache says nothing about it.
    _, headers, _ = await send(gw.url, {**BODY, "model": "plain"})
    assert "x-gateway-cache" not in headers


async def test_no_store_is_not_kept(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    gw = await gateway(config(upstream(a)))
    await send(gw.url, headers={"Cache-Control": "no-store"})
    _, headers, _ = await send(gw.url)
    assert headers["x-gateway-cache"] == "miss"
    _, headers, _ = await send(gw.url)
    assert headers["x-gateway-cache"] == "hit"
    assert len(a.requests) == 2


async def test_stream_replay_is_byte_faithful_with_its_chunking(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=6, chunk_delay_s=0.01))
    gw = await gateway(config(upstream(a)))
    for extra in ({}, {"stream_options": {"include_usage": True}}):
        a.reset()
        body = stream_body(**extra, temperature=0.5 if extra else 0.1)
        _, h1, original = await send(gw.url, body)
        _, h2, replay = await send(gw.url, body)
        assert (h1["x-gateway-cache"], h2["x-gateway-cache"]) == ("miss", "hit")
        assert h2["Content-Type"] == "text/event-stream"
        assert replay == original
        assert len(original) > 3
        assert len(a.requests) == 1


async def test_json_and_stream_serve_each_other(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=4, text="one two three four"))
    gw = await gateway(config(upstream(a)))
    _, _, whole = await send(gw.url)
    answer = orjson.loads(b"".join(whole))
    _, headers, streamed = await send(gw.url, stream_body(stream_options={"include_usage": True}))
    assert headers["x-gateway-cache"] == "hit"
    assert content_of(streamed) == answer["choices"][0]["message"]["content"]
    events = [e for e in b"".join(streamed).split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert orjson.loads(events[-2][6:])["usage"] == answer["usage"]
    assert orjson.loads(events[-3][6:])["choices"][0]["finish_reason"] == "stop"
    # The other way round: a recorded stream answers a JSON request, assembled.
    other = {**BODY, "messages": [{"role": "user", "content": "other"}]}
    _, _, recorded = await send(gw.url, {**other, "stream": True})
    _, headers, body = await send(gw.url, other)
    assert headers["x-gateway-cache"] == "hit"
    assembled = orjson.loads(b"".join(body))
    assert assembled["object"] == "chat.completion"
    assert assembled["choices"][0]["message"]["content"] == content_of(recorded)
    assert assembled["choices"][0]["finish_reason"] == "stop"
    assert len(a.requests) == 2


async def test_twenty_identical_requests_make_one_upstream_call(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(latency_s=0.3, chunks=5, chunk_delay_s=0.02))
    gw = await gateway(config(upstream(a)))
    body = {**BODY, "messages": [{"role": "user", "content": "flight"}]}
    streams = [send(gw.url, {**body, "stream": True}) for _ in range(10)]
    wholes = [send(gw.url, body) for _ in range(10)]
    results = await asyncio.gather(*streams, *wholes)
    assert len(a.requests) == 1
    assert all(status == 200 for status, _, _ in results)
    caches = sorted(h["x-gateway-cache"] for _, h, _ in results)
    assert caches == ["hit"] * 19 + ["miss"]
    texts = {content_of(c) for _, _, c in results[:10]}
    texts |= {
        orjson.loads(b"".join(c))["choices"][0]["message"]["content"] for _, _, c in results[10:]
    }
    assert len(texts) == 1


async def test_leader_failure_sends_followers_upstream(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(latency_s=0.2))
    a.script(Behaviour(status=400, latency_s=0.2))
    gw = await gateway(config(upstream(a), ttl_s=60))
    results = await asyncio.gather(*(send(gw.url) for _ in range(3)))
    statuses = sorted(s for s, _, _ in results)
    assert statuses[0] == 200 and statuses[-1] == 400
    assert len(a.requests) >= 2


async def test_errors_and_cut_streams_are_not_cached(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    gw = await gateway(config(upstream(a)))
    a.script(Behaviour(status=400))
    status, headers, _ = await send(gw.url)
    assert status == 400 and headers["x-gateway-cache"] == "miss"
    a.script(Behaviour(fault="reset_mid_stream", chunks=5, fault_after_chunks=2))
    _, headers, cut = await send(gw.url, stream_body())
    assert headers["x-gateway-cache"] == "miss"
    assert b"[DONE]" not in b"".join(cut)
    _, headers, _ = await send(gw.url, stream_body())
    assert headers["x-gateway-cache"] == "miss"
    _, headers, _ = await send(gw.url, stream_body())
    assert headers["x-gateway-cache"] == "hit"
    assert len(a.requests) == 3


async def test_entries_over_the_size_cap_are_not_kept(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=50, text="word " * 400))
    gw = await gateway(config(upstream(a), max_entry_kb=1))
    for _ in range(2):
        _, headers, _ = await send(gw.url)
        assert headers["x-gateway-cache"] == "miss"
    assert len(a.requests) == 2


async def test_ttl_expiry(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    gw = await gateway(config(upstream(a), ttl_s=0.3))
    await send(gw.url)
    _, headers, _ = await send(gw.url)
    assert headers["x-gateway-cache"] == "hit"
    await asyncio.sleep(0.4)
    _, headers, _ = await send(gw.url)
    assert headers["x-gateway-cache"] == "miss"
    assert len(a.requests) == 2


async def test_scopes_keep_teams_apart(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    keys = make_keys(
        tmp_path,
        {"red": {}, "blue": {}},
        r1={"team": "red"},
        r2={"team": "red"},
        b1={"team": "blue"},
        solo={},
    )
    gw = await gateway(config(upstream(a)))

    async def as_key(name: str) -> str:
        _, headers, _ = await send(gw.url, headers={"Authorization": f"Bearer {keys[name]}"})
        return headers["x-gateway-cache"]

    assert await as_key("r1") == "miss"
    assert await as_key("r2") == "hit"  # same team
    assert await as_key("b1") == "miss"  # another team
    assert await as_key("solo") == "miss"  # no team: the key alone
    assert await as_key("solo") == "hit"
    assert len(a.requests) == 3


async def test_key_scope_and_global_scope(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    keys = make_keys(tmp_path, {"red": {}}, r1={"team": "red"}, r2={"team": "red"})
    cfg = config(upstream(a), scope="key")
    cfg["routes"]["wide"] = {"tiers": [{"a": 1}], "cache": {"scope": "global"}}  # type: ignore[index]
    gw = await gateway(cfg)
    for body, expected in ((BODY, ["miss", "miss"]), ({**BODY, "model": "wide"}, ["miss", "hit"])):
        got = []
        for name in ("r1", "r2"):
            _, h, _ = await send(gw.url, body, {"Authorization": f"Bearer {keys[name]}"})
            got.append(h["x-gateway-cache"])
        assert got == expected


async def test_hits_cost_nothing_and_are_in_the_ledger_and_metrics(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=2))
    keys = make_keys(tmp_path, k={"usd_total": 3.0, "rpm": 100})
    price = {"input_per_mtok": 0.0, "output_per_mtok": 1_000_000.0}  # 1 USD per output token
    cfg = config(upstream(a, price=price))
    cfg["server"]["ledger"] = "usage.db"  # type: ignore[index]
    cfg["admin"] = {"listen": "127.0.0.1:0", "metrics_open": True}
    gw = await gateway(cfg)
    auth = {"Authorization": f"Bearer {keys['k']}"}
    body = {**BODY, "max_tokens": 1}
    _, headers, _ = await send(gw.url, body, auth)
    assert headers["x-gateway-cache"] == "miss"
    for stream in (False, True, False, True):
        status, headers, _ = await send(gw.url, {**body, "stream": stream}, auth)
        assert (status, headers["x-gateway-cache"]) == (200, "hit")
        assert float(headers["x-gateway-cost-usd"]) == 0.0
    counters = await gw.server.governor.state.counters("key:k", time.time())
    assert counters.usd["total"] == 2.0  # the miss's two output tokens; hits are free
    assert counters.requests_1m == 5  # a hit is still a request against the key's rpm
    assert counters.tokens_1m == 19 + 2  # the miss only (19 prompt tokens, 2 out)
    async with aiohttp.ClientSession() as s, s.get(gw.server.admin_address + "/metrics") as r:
        metrics = await r.text()
    assert 'gateway_cache_lookups_total{result="hit",route="chat"} 4.0' in metrics
    assert 'gateway_cache_lookups_total{result="miss",route="chat"} 1.0' in metrics
    await gw.server.shutdown()
    conn = sqlite3.connect(tmp_path / "usage.db")
    rows = conn.execute(
        "SELECT cache, upstream, tokens_out, cost_usd, status FROM requests"
    ).fetchall()
    conn.close()
    assert sorted(rows) == [("hit", None, 2, 0.0, 200)] * 4 + [("miss", "a", 2, 2.0, 200)]


async def test_a_refusal_before_the_lookup_says_skip(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    keys = make_keys(tmp_path, k={"rpm": 1})
    gw = await gateway(config(upstream(a)))
    auth = {"Authorization": f"Bearer {keys['k']}"}
    assert (await send(gw.url, BODY, auth))[1]["x-gateway-cache"] == "miss"
    status, headers, _ = await send(gw.url, BODY, auth)
    assert (status, headers["x-gateway-cache"]) == (429, "skip")


async def test_stream_followers_get_chunks_as_the_leader_relays_them(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=6, chunk_delay_s=0.1))
    gw = await gateway(config(upstream(a)))
    body = stream_body(messages=[{"role": "user", "content": "fan out"}])
    order: list[str] = []

    async def read(who: str, delay: float) -> list[bytes]:
        await asyncio.sleep(delay)
        async with (
            aiohttp.ClientSession() as s,
            s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(body)) as r,
        ):
            order.append(f"{who}:{r.headers['x-gateway-cache']}")
            chunks: list[bytes] = []
            async for data, _ in r.content.iter_chunks():
                if not chunks:
                    order.append(f"{who}:first")
                chunks.append(data)
            order.append(f"{who}:end")
            return chunks

    leader, follower = await asyncio.gather(read("leader", 0), read("follower", 0.15))
    assert order.index("follower:first") < order.index("leader:end")
    assert "leader:miss" in order and "follower:hit" in order
    assert b"".join(follower) == b"".join(leader)
    assert len(a.requests) == 1


async def test_a_leader_that_leaves_ends_its_stream_followers_with_an_error_event(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=20, chunk_delay_s=0.05))
    gw = await gateway(config(upstream(a)))
    body = stream_body(messages=[{"role": "user", "content": "leaves"}])

    async def leader() -> None:
        async with (
            aiohttp.ClientSession() as s,
            s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(body)) as r,
        ):
            await r.content.readuntil(b"\n\n")
            await asyncio.sleep(0.25)  # the follower has joined by now; then the leader leaves

    async def follower() -> list[bytes]:
        await asyncio.sleep(0.1)
        return (await send(gw.url, body))[2]

    _, got = await asyncio.gather(leader(), follower())
    events = [e for e in b"".join(got).split(b"\n\n") if e]
    assert orjson.loads(events[-1][6:])["error"]["code"] == "upstream_error"
    assert b"[DONE]" not in b"".join(got)
    _, headers, _ = await send(gw.url, body)
    assert headers["x-gateway-cache"] == "miss"  # nothing was stored


async def test_embeddings_are_cached_and_messages_pass_by(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    gw = await gateway(config(upstream(a)))
    embed = orjson.dumps({"model": "chat", "input": ["some text"]})
    messages = orjson.dumps(
        {"model": "chat", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    )
    seen: list[tuple[int, str]] = []
    async with aiohttp.ClientSession() as s:
        for path, data in (("embeddings", embed),) * 2 + (("messages", messages),) * 2:
            async with s.post(f"{gw.url}/v1/{path}", data=data) as r:
                seen.append((r.status, r.headers["x-gateway-cache"]))
                if path == "embeddings":
                    assert (await r.json())["data"][0]["embedding"]
    assert seen == [(200, "miss"), (200, "hit"), (200, "skip"), (200, "skip")]
    assert len(a.requests) == 3


async def test_followers_of_an_answer_too_large_to_keep_still_share_it(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(latency_s=0.2, chunks=40, text="word " * 400))
    gw = await gateway(config(upstream(a), max_entry_kb=1))
    body = {**BODY, "messages": [{"role": "user", "content": "large"}]}
    results = await asyncio.gather(
        send(gw.url, {**body, "stream": True}), *(send(gw.url, body) for _ in range(4))
    )
    assert all(status == 200 for status, _, _ in results)
    assert len(a.requests) == 1
    _, headers, _ = await send(gw.url, body)
    assert headers["x-gateway-cache"] == "miss"  # shared while in flight, never stored
