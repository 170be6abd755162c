"""Edge limits against slow and greedy clients, on real sockets (loopback, bounded)."""

from __future__ import annotations

import asyncio
import time

import orjson
from conftest import FakeFactory, GatewayFactory, InProcessGateway, base_config, post_chat, upstream

from proxy.fake.behaviour import Behaviour

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
SLOW_CLIENTS = 500


def config(fake: object, **server: object) -> dict[str, object]:
    cfg = base_config({"a": upstream(fake)}, {"chat": {"tiers": [{"a": 1}]}})  # type: ignore[arg-type]
    cfg["server"].update(server)  # type: ignore[attr-defined]
    return cfg


def port(gw: InProcessGateway) -> int:
    return int(gw.url.rsplit(":", 1)[1])


async def read_all(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    async with asyncio.timeout(timeout_s):
        return await reader.read()


async def test_slowloris_gets_408_and_is_closed(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    gw = await gateway(config(a, header_timeout_s=0.4))
    reader, writer = await asyncio.open_connection("127.0.0.1", port(gw))
    started = time.monotonic()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    closed = asyncio.ensure_future(read_all(reader, 5.0))
    # Trickle one header byte every 50 ms: never a whole header block.
    for _ in range(30):
        if closed.done():
            break
        writer.write(b"X")
        await asyncio.sleep(0.05)
    raw = await closed
    took = time.monotonic() - started
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert orjson.loads(raw.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    assert 0.35 < took < 1.5
    writer.close()


async def test_silent_connection_is_closed_too(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    gw = await gateway(config(a, header_timeout_s=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", port(gw))
    raw = await read_all(reader, 3.0)
    assert raw.startswith(b"HTTP/1.1 408 ")
    writer.close()


async def test_keep_alive_connection_still_serves_after_a_slow_gap(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    """The header deadline starts with the next request's first byte, not when idle begins."""
    a = await fakes("a")
    gw = await gateway(config(a, header_timeout_s=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", port(gw))
    body = orjson.dumps(CHAT)
    req = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    for _ in range(2):
        writer.write(req)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        await asyncio.sleep(0.5)  # idle longer than the header timeout: keep-alive's business
    writer.close()


async def test_many_slow_clients_do_not_stop_normal_requests(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    gw = await gateway(config(a, header_timeout_s=1.0))
    conns = []
    for _ in range(SLOW_CLIENTS):
        _, w = await asyncio.open_connection("127.0.0.1", port(gw))
        w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        conns.append(w)
    assert gw.server.edge.connections >= SLOW_CLIENTS - 5
    started = time.monotonic()
    for _ in range(5):
        status, _, _ = await post_chat(gw.url, CHAT)
        assert status == 200
    assert time.monotonic() - started < 2.0
    await asyncio.sleep(1.3)  # every slow client is timed out and closed
    assert gw.server.edge.connections <= 1
    assert gw.server.edge.timed_out >= SLOW_CLIENTS
    for w in conns:
        w.close()


async def test_connection_cap_answers_503(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    gw = await gateway(config(a, max_connections=3))
    held = [await asyncio.open_connection("127.0.0.1", port(gw)) for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", port(gw))
    raw = await read_all(reader, 3.0)
    assert raw.startswith(b"HTTP/1.1 503 ")
    assert b"Retry-After: 1" in raw and b"too_many_connections" in raw
    writer.close()
    for _, w in held:
        w.close()
    await asyncio.sleep(0.1)
    assert (await post_chat(gw.url, CHAT))[0] == 200


async def test_stalled_body_gets_408(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    gw = await gateway(config(a, body_timeout_s=0.3))
    reader, writer = await asyncio.open_connection("127.0.0.1", port(gw))
    writer.write(
        b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"mo'
    )
    started = time.monotonic()
    raw = await read_all(reader, 3.0)
    assert raw.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 1.5
    assert a.request_count == 0
    writer.close()


async def test_request_cap_answers_503_with_retry_after(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    a.script(Behaviour(latency_s=0.5))
    gw = await gateway(config(a, max_requests=1))
    slow = asyncio.ensure_future(post_chat(gw.url, CHAT))
    await asyncio.sleep(0.15)
    status, headers, body = await post_chat(gw.url, CHAT)
    assert status == 503 and headers["Retry-After"] == "1"
    assert orjson.loads(body)["error"]["code"] == "too_many_requests"
    assert (await slow)[0] == 200


async def test_upstream_max_inflight_skips_a_busy_upstream(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    a.script(Behaviour(latency_s=0.5))
    cfg = base_config(
        {"a": upstream(a, max_inflight=1), "b": upstream(b)},
        {"chat": {"tiers": [{"a": 1}, {"b": 1}]}},
    )
    gw = await gateway(cfg)
    first = asyncio.ensure_future(post_chat(gw.url, CHAT))
    await asyncio.sleep(0.15)
    status, headers, _ = await post_chat(gw.url, CHAT)
    assert (status, headers["x-gateway-upstream"], headers["x-gateway-attempts"]) == (200, "b", "1")
    status, headers, _ = await first
    assert (status, headers["x-gateway-upstream"]) == (200, "a")
    assert a.request_count == 1
