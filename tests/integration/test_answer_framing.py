"""How proxied answers are framed on the client's connection (server/whole.py, streamout.py),
checked byte by byte on raw sockets: keep-alive reuse, pipelined requests, Connection: close,
HTTP/1.0 clients, chunked streams."""

from __future__ import annotations

import asyncio

import orjson
from conftest import FakeFactory, GatewayFactory, InProcessGateway, base_config, upstream

CHAT: dict[str, object] = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}


async def gateway_on(fakes: FakeFactory, gateway: GatewayFactory) -> InProcessGateway:
    a = await fakes("a")
    cfg = base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}})
    return await gateway(cfg)


def request(doc: dict[str, object], version: str = "1.1", extra: str = "") -> bytes:
    body = orjson.dumps(doc)
    head = (
        f"POST /v1/chat/completions HTTP/{version}\r\nHost: x\r\nContent-Type: application/json"
        f"\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def connect(gw: InProcessGateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One Content-Length answer: status line, headers (lower-case names), body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status, *lines = head[:-4].split(b"\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (x.split(b":", 1) for x in lines)}
    body = await asyncio.wait_for(reader.readexactly(int(headers[b"content-length"])), 5)
    return status, headers, body


async def test_json_answers_keep_the_connection_and_serve_pipelined_requests(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    gw = await gateway_on(fakes, gateway)
    reader, writer = await connect(gw)
    writer.write(request(CHAT) + request(CHAT))  # two requests in one write
    for _ in range(2):
        status, headers, body = await read_answer(reader)
        assert status == b"HTTP/1.1 200 OK"
        assert headers[b"content-type"].startswith(b"application/json")
        assert b"connection" not in headers
        assert headers[b"date"].endswith(b" GMT")
        assert headers[b"x-gateway-upstream"] == b"a"
        assert orjson.loads(body)["object"] == "chat.completion"
    writer.write(request(CHAT))  # and the connection still serves
    assert (await read_answer(reader))[0] == b"HTTP/1.1 200 OK"
    writer.close()


async def test_connection_close_is_honoured(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    gw = await gateway_on(fakes, gateway)
    reader, writer = await connect(gw)
    writer.write(request(CHAT, extra="Connection: close\r\n"))
    status, headers, _ = await read_answer(reader)
    assert (status, headers[b"connection"]) == (b"HTTP/1.1 200 OK", b"close")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the gateway
    writer.close()


async def test_http_1_0_client_gets_1_0_answers(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    gw = await gateway_on(fakes, gateway)
    reader, writer = await connect(gw)
    writer.write(request(CHAT, "1.0", "Connection: keep-alive\r\n"))
    status, headers, _ = await read_answer(reader)
    assert (status, headers[b"connection"]) == (b"HTTP/1.0 200 OK", b"keep-alive")
    writer.write(request({**CHAT, "stream": True}, "1.0"))  # a stream: no chunking, then close
    raw = await asyncio.wait_for(reader.read(), 5)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200 OK")
    assert b"transfer-encoding" not in head.lower()
    assert body.startswith(b"data: ") and body.endswith(b"data: [DONE]\n\n")
    writer.close()


async def test_stream_is_chunked_and_the_connection_serves_again(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    gw = await gateway_on(fakes, gateway)
    reader, writer = await connect(gw)
    writer.write(request({**CHAT, "stream": True}))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked\r\n" in head
    assert b"Content-Type: text/event-stream\r\n" in head
    events = b""
    while True:  # chunked framing, read as a client would
        size = int((await asyncio.wait_for(reader.readuntil(b"\r\n"), 5))[:-2], 16)
        data = await asyncio.wait_for(reader.readexactly(size + 2), 5)
        if size == 0:
            break
        events += data[:-2]
    assert events.startswith(b"data: ") and events.endswith(b"data: [DONE]\n\n")
    assert b'"choices":[]' not in events  # the usage event the gateway asked for is cut
    writer.write(request(CHAT))
    assert (await read_answer(reader))[0] == b"HTTP/1.1 200 OK"
    writer.close()
