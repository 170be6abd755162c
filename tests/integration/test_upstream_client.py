"""Conformance of the upstream client (proxy.transport.forward + pool + wire) against a raw
HTTP/1.1 server on 127.0.0.1 whose every answer is scripted byte for byte: keep-alive reuse,
chunked bodies, Connection: close, read-until-close bodies, 1xx, bodies-less statuses,
unsolicited (pipelined) bytes, truncation, timeouts, large bodies, stale connections."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from proxy.config.values import Timeouts
from proxy.core.failures import FailureKind
from proxy.providers.base import UpstreamRequest
from proxy.routing.send import AttemptFailed
from proxy.transport.forward import HTTPReply, HTTPSender
from proxy.transport.pool import Pool
from proxy.transport.wire import BadTarget, request_head, target

JSON = b'{"ok":true}'
OK_CL = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n" + JSON
FAST = Timeouts(connect_s=2.0, ttfb_s=2.0, idle_s=2.0)

Answer = Callable[[bytes], list[bytes]]
"""Given one whole request (head and body), the byte strings to write back; b"" closes."""


class Upstream:
    """A raw HTTP/1.1 server: reads each request whole (Content-Length), answers by script."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                for part in self.answer(request):
                    if part == b"":
                        writer.close()
                        return
                    if part.startswith(b"SLEEP "):
                        await asyncio.sleep(float(part[6:]))
                        continue
                    writer.write(part)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def pool() -> AsyncIterator[Pool]:
    p = Pool(keepalive_s=60.0)
    yield p
    p.close()


async def serve(answer: Answer) -> Upstream:
    up = Upstream(answer)
    await up.start()
    return up


async def call(
    sender: HTTPSender, url: str, body: bytes = b"{}", *, stream: bool = False
) -> HTTPReply:
    req = UpstreamRequest(url=url, headers={"Content-Type": "application/json"}, body=body)
    return await sender(req, FAST, stream=stream)


async def test_content_length_answer_and_keepalive_reuse(pool: Pool) -> None:
    up = await serve(lambda _: [OK_CL])
    sender = HTTPSender(pool)
    for _ in range(3):
        reply = await call(sender, up.url)
        assert (reply.status, reply.first) == (200, JSON)
        assert reply.headers["content-type"] == "application/json"
        reply.release()
    assert up.connections == 1
    assert len(up.requests) == 3
    first = up.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nContent-Length: 2\r\n\r\n{}" in first


async def test_chunked_answer_is_joined_and_connection_reused(pool: Pool) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5\r\n{"ok"\r\n6\r\n:true}\r\n0\r\n\r\n'
    )
    up = await serve(lambda _: [chunked])
    sender = HTTPSender(pool)
    for _ in range(2):
        reply = await call(sender, up.url)
        assert reply.first == JSON
        reply.release()
    assert up.connections == 1


async def test_connection_close_answer_is_not_reused(pool: Pool) -> None:
    close = OK_CL.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
    up = await serve(lambda _: [close, b""])
    sender = HTTPSender(pool)
    for _ in range(2):
        reply = await call(sender, up.url)
        assert reply.first == JSON
        reply.release()
    assert up.connections == 2
    assert pool.idle_count() == 0


async def test_body_read_until_close(pool: Pool) -> None:
    up = await serve(
        lambda _: [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n", JSON, b""]
    )
    reply = await call(HTTPSender(pool), up.url)
    assert reply.first == JSON
    reply.release()
    assert pool.idle_count() == 0


async def test_interim_1xx_answers_are_skipped(pool: Pool) -> None:
    up = await serve(
        lambda _: [b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 102 Processing\r\n\r\n", OK_CL]
    )
    reply = await call(HTTPSender(pool), up.url)
    assert (reply.status, reply.first) == (200, JSON)
    reply.release()
    assert pool.idle_count() == 1


async def test_answer_without_body_status_204(pool: Pool) -> None:
    up = await serve(lambda _: [b"HTTP/1.1 204 No Content\r\n\r\n"])
    sender = HTTPSender(pool)
    for _ in range(2):
        reply = await call(sender, up.url)
        assert (reply.status, reply.first) == (204, b"")
        reply.release()
    assert up.connections == 1


async def test_unsolicited_bytes_after_an_answer_are_never_read_as_the_next_one(pool: Pool) -> None:
    # A second (pipelined, unrequested) answer arrives with the first: that connection must
    # not carry the next request, or its answer would be the stale 500.
    stale = b"HTTP/1.1 500 Stale\r\nContent-Length: 0\r\n\r\n"
    up = await serve(lambda _: [OK_CL + stale])
    sender = HTTPSender(pool)
    reply = await call(sender, up.url)
    assert reply.first == JSON
    await asyncio.sleep(0.05)
    reply.release()
    again = await call(sender, up.url)
    assert (again.status, again.first) == (200, JSON)
    again.release()
    assert up.connections == 2


async def test_error_status_body_is_returned(pool: Pool) -> None:
    err = b'{"error":{"message":"slow down"}}'
    head = b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: %d\r\n\r\n"
    up = await serve(lambda _: [head % len(err) + err])
    reply = await call(HTTPSender(pool), up.url)
    assert (reply.status, reply.first, reply.headers["retry-after"]) == (429, err, "3")
    reply.release()


async def test_truncated_body_is_a_reset(pool: Pool) -> None:
    cut = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"ok"'
    up = await serve(lambda _: [cut, b""])
    with pytest.raises(AttemptFailed) as info:
        await call(HTTPSender(pool), up.url)
    assert info.value.kind is FailureKind.RESET
    assert pool.idle_count() == 0


async def test_no_answer_is_a_ttfb_timeout(pool: Pool) -> None:
    up = await serve(lambda _: [b"SLEEP 5"])
    req = UpstreamRequest(url=up.url, headers={}, body=b"{}")
    with pytest.raises(AttemptFailed) as info:
        await HTTPSender(pool)(req, Timeouts(ttfb_s=0.2), stream=False)
    assert info.value.kind is FailureKind.TTFB_TIMEOUT


async def test_stalled_body_is_a_reset_after_the_idle_allowance(pool: Pool) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"
    up = await serve(lambda _: [head, b"SLEEP 5"])
    req = UpstreamRequest(url=up.url, headers={}, body=b"{}")
    with pytest.raises(AttemptFailed) as info:
        await HTTPSender(pool)(req, Timeouts(ttfb_s=2.0, idle_s=0.2), stream=False)
    assert info.value.kind is FailureKind.RESET
    assert "stalled" in info.value.detail


async def test_an_upstream_url_that_is_not_http_is_a_connect_failure(pool: Pool) -> None:
    with pytest.raises(AttemptFailed) as info:
        await call(HTTPSender(pool), "ftp://127.0.0.1:1/v1/chat/completions")
    assert info.value.kind is FailureKind.CONNECT


async def test_refused_connection_is_a_connect_failure(pool: Pool) -> None:
    up = await serve(lambda _: [OK_CL])
    assert up.server is not None
    up.server.close()
    await up.server.wait_closed()
    with pytest.raises(AttemptFailed) as info:
        await call(HTTPSender(pool), up.url)
    assert info.value.kind is FailureKind.CONNECT


async def test_stream_is_read_to_its_end_then_reused(pool: Pool) -> None:
    events = [b'data: {"n":%d}\n\n' % i for i in range(3)] + [b"data: [DONE]\n\n"]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    up = await serve(lambda _: [head, chunks])
    sender = HTTPSender(pool)
    for _ in range(2):
        reply = await call(sender, up.url, stream=True)
        got = [reply.first]
        while chunk := await reply.read():
            got.append(chunk)
        assert b"".join(got) == b"".join(events)
        reply.release()
    assert up.connections == 1


async def test_closing_a_stream_fails_the_pending_read_at_once(pool: Pool) -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    first = b"data: {}\n\n"
    up = await serve(lambda _: [head + b"%x\r\n%s\r\n" % (len(first), first), b"SLEEP 5"])
    reply = await call(HTTPSender(pool), up.url, stream=True)
    pending = asyncio.ensure_future(reply.read())
    await asyncio.sleep(0.05)
    reply.close()
    with pytest.raises(aiohttp.ClientConnectionError, match="closed"):
        await asyncio.wait_for(pending, 1.0)


async def test_large_body_arrives_whole(pool: Pool) -> None:
    body = b'{"x":"' + b"y" * (3 << 20) + b'"}'
    up = await serve(lambda _: [OK_CL])
    reply = await call(HTTPSender(pool), up.url, body)
    reply.release()
    assert up.requests[0].endswith(body)


async def test_connection_the_upstream_closed_while_idle_is_not_used() -> None:
    pool = Pool(keepalive_s=60.0)
    up = await serve(lambda _: [OK_CL, b"SLEEP 0.01", b""])  # no Connection: close
    sender = HTTPSender(pool)
    try:
        reply = await call(sender, up.url)
        reply.release()
        await asyncio.sleep(0.2)  # the upstream closed it in the meantime
        again = await call(sender, up.url)
        assert again.first == JSON
        again.release()
        assert up.connections == 2
    finally:
        pool.close()


async def test_idle_connections_past_keepalive_are_closed() -> None:
    pool = Pool(keepalive_s=0.1)
    up = await serve(lambda _: [OK_CL])
    try:
        reply = await call(HTTPSender(pool), up.url)
        reply.release()
        assert pool.idle_count() == 1
        await asyncio.sleep(0.35)
        assert pool.idle_count() == 0
    finally:
        pool.close()


def test_wire_head_and_targets() -> None:
    t = target("https://api.example.com/v1/chat/completions?api-version=1")
    assert (t.origin.host, t.origin.port, t.origin.tls) == ("api.example.com", 443, True)
    head = request_head(t, {"Authorization": "Bearer k", "X-Request-Id": "r"}, 7)
    assert head == (
        b"POST /v1/chat/completions?api-version=1 HTTP/1.1\r\nHost: api.example.com\r\n"
        b"Authorization: Bearer k\r\nX-Request-Id: r\r\nContent-Length: 7\r\n\r\n"
    )
    assert target("http://[::1]:8080/v1").start.startswith("POST /v1 HTTP/1.1\r\nHost: [::1]:8080")
    with pytest.raises(ValueError, match="line break"):
        request_head(t, {"X-A": "v\r\nX-Injected: 1"}, 0)
    with pytest.raises(ValueError, match="line break"):
        request_head(t, {"X-A\n": "v"}, 0)
    with pytest.raises(BadTarget):
        target("ftp://example.com/x")


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with the openssl command."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def test_tls_upstream_is_verified(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    up = Upstream(lambda _: [OK_CL])
    up.server = await asyncio.start_server(up._serve, "127.0.0.1", 0, ssl=server_ctx)
    port = up.server.sockets[0].getsockname()[1]
    url = f"https://127.0.0.1:{port}/v1/chat/completions"
    trusting = ssl.create_default_context(cafile=str(cert))
    pool = Pool(tls=trusting)
    try:
        reply = await call(HTTPSender(pool), url)
        assert (reply.status, reply.first) == (200, JSON)
        reply.release()
        again = await call(HTTPSender(pool), url)  # the TLS connection is kept alive
        again.release()
        assert up.connections == 1
    finally:
        pool.close()
    strict = Pool()  # the system's CAs: a self-signed certificate is refused
    try:
        with pytest.raises(AttemptFailed) as info:
            await call(HTTPSender(strict), url)
        assert info.value.kind is FailureKind.CONNECT
        assert "CERTIFICATE_VERIFY_FAILED" in info.value.detail
    finally:
        strict.close()


async def test_header_bytes_that_are_not_utf8_go_on_unchanged(pool: Pool) -> None:
    # aiohttp's server parser decodes a header such as `User-Agent: caf\xe9` with
    # surrogateescape; the upstream gets the client's bytes, not an encoding error.
    up = await serve(lambda _: [OK_CL])
    req = UpstreamRequest(url=up.url, headers={"User-Agent": "caf\udce9"}, body=b"{}")
    reply = await HTTPSender(pool)(req, FAST, stream=False)
    reply.release()
    assert b"\r\nUser-Agent: caf\xe9\r\n" in up.requests[0]


async def test_an_early_answer_to_a_large_body_is_returned_not_a_reset(pool: Pool) -> None:
    """An upstream that refuses a body from its headers (413) and closes without reading it:
    the gateway relays that answer rather than failing the attempt as a reset."""
    refused = b'{"error":{"message":"too large"}}'
    answer = b"HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"

    async def early(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer % (len(refused), refused))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(early, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        body = b'{"x":"' + b"y" * (64 << 20) + b'"}'  # more than the socket buffers hold
        reply = await call(HTTPSender(pool), f"http://127.0.0.1:{port}/v1/x", body)
        assert (reply.status, reply.first) == (413, refused)
        reply.release()
    finally:
        server.close()
        await server.wait_closed()
