"""Abuse at the edge, through a real process: stalled clients at shutdown, parser rejections."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from functools import partial
from pathlib import Path

import aiohttp
import orjson
import pytest
from e2e.e2e_harness import (
    FakeStarter,
    GatewayStarter,
    chat_body,
    config_dict,
    upstream_entry,
    wait_until,
    write_config,
)

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def test_sigterm_with_a_stalled_body_and_idle_connections_exits_at_once(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    fake = await fake_upstreams("a")
    path = tmp_path / "gateway.toml"
    write_config(
        path,
        config_dict(
            {"a": upstream_entry(fake, "m")}, {"chat": {"tiers": [{"a": 1}]}}, drain_timeout_s=60
        ),
    )
    gw = spawn_gateway(path)
    await gw.wait_ready()
    body = chat_body("chat", stream=False)
    # 1. Headers and half the body, then nothing: a stalled client.
    stalled_r, stalled_w = await _connect(gw.port)
    stalled_w.write(
        (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body[: len(body) // 2]
    )
    # 2. Half a request line and headers, then nothing.
    partial_r, partial_w = await _connect(gw.port)
    partial_w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Le")
    # 3. An idle keep-alive connection after one answered request.
    idle_r, idle_w = await _connect(gw.port)
    idle_w.write(
        (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    head = await asyncio.wait_for(idle_r.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200")
    await asyncio.sleep(0.3)  # the stalled request is inside its handler now

    sent = time.monotonic()
    gw.signal(signal.SIGTERM)
    assert await gw.wait_exit(timeout_s=2.0) == 0
    assert time.monotonic() - sent < 2.0
    for reader in (stalled_r, partial_r):
        assert await asyncio.wait_for(reader.read(), 1) == b""  # closed, not answered
    closed = gw.events("unreceived_closed")
    assert closed and closed[0]["requests"] == 1
    assert gw.events("stopped")[0]["drained"] is True
    for w in (stalled_w, partial_w, idle_w):
        w.close()
        with contextlib.suppress(OSError):
            await w.wait_closed()


BIG_HEADER = b"X-Big: " + b"SECRETISH" * 11_200 + b"\r\n"  # ~100 KB
MANY_HEADERS = b"".join(b"X-SECRETISH-%d: v\r\n" % i for i in range(200))
CL_AND_TE = b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\nX-SECRETISH: 1\r\n"
BAD_CHUNKS = b"Transfer-Encoding: chunked\r\n"


@pytest.mark.parametrize(
    ("name", "headers", "body", "status"),
    [
        ("100 KB header", BIG_HEADER, b"", 431),
        ("200 headers", MANY_HEADERS, b"", 431),
        ("CL and TE", CL_AND_TE, b"0\r\n\r\n", 400),
        ("bad chunk size", BAD_CHUNKS, b"zz\r\nSECRETISH\r\n0\r\n\r\n", 400),
    ],
)
async def test_requests_the_http_parser_refuses_get_openai_shaped_errors(
    tmp_path: Path,
    fake_upstreams: FakeStarter,
    spawn_gateway: GatewayStarter,
    name: str,
    headers: bytes,
    body: bytes,
    status: int,
) -> None:
    fake = await fake_upstreams("a")
    path = tmp_path / "gateway.toml"
    write_config(
        path, config_dict({"a": upstream_entry(fake, "m")}, {"chat": {"tiers": [{"a": 1}]}})
    )
    gw = spawn_gateway(path)
    await gw.wait_ready()
    reader, writer = await _connect(gw.port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n" + body)
    raw = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == str(status).encode(), (name, raw[:300])
    assert b"application/json" in head.lower()
    error = orjson.loads(payload)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert b"SECRETISH" not in raw  # nothing of the input is reflected
    await asyncio.sleep(0.2)
    gw.signal(signal.SIGTERM)
    assert await gw.wait_exit(timeout_s=5.0) == 0
    rejected = gw.events("http_request_rejected")
    assert len(rejected) == 1 and rejected[0]["status"] == status, gw.output()
    if status == 431:
        assert error["code"] == "request_header_too_large"
    assert not [line for line in gw.stderr if line.strip()], gw.output()  # no plain-text errors
    assert all(line.obj is not None for line in gw.snapshot()), gw.output()  # only JSON lines
    assert "SECRETISH" not in gw.output()


def two_part_config(a_url: str, b_url: str, weight: int) -> tuple[str, str]:
    """gateway.toml in two parts; the first alone is a valid file without route `late`."""
    head = (
        '[server]\nlisten = "127.0.0.1:0"\nwatch = true\nreload_settle_ms = 1500\n'
        "drain_timeout_s = 2\n\n"
        f'[upstreams.a]\nbase_url = "{a_url}"\nmodel = "m-a"\n\n'
        f"[routes.chat]\ntiers = [{{ a = {weight} }}]\n\n"
    )
    tail = (
        f'[upstreams.b]\nbase_url = "{b_url}"\nmodel = "m-b"\n\n'
        f"[routes.late]\ntiers = [{{ b = {weight} }}]\n"
    )
    return head, tail


async def test_a_config_written_in_two_steps_under_load_loses_no_request(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    a, b = await fake_upstreams("a"), await fake_upstreams("b")
    path = tmp_path / "gateway.toml"
    path.write_text("".join(two_part_config(a.base_url, b.base_url, 1)))
    gw = spawn_gateway(path)
    await gw.wait_ready()
    mark = gw.mark()
    statuses: Counter[int] = Counter()
    done = asyncio.Event()

    async def client(session: aiohttp.ClientSession, model: str) -> None:
        body = chat_body(model, stream=False)
        while not done.is_set():
            async with session.post(gw.address + "/v1/chat/completions", data=body) as r:
                await r.read()
                statuses[r.status] += 1

    def reloaded(n: int) -> bool:
        return len(gw.events("config_reloaded", mark)) >= n

    async def writer() -> None:
        for n, (weight, pause) in enumerate(((2, 0.4), (3, 1.0), (4, 0.7)), start=1):
            head, tail = two_part_config(a.base_url, b.base_url, weight)
            with path.open("w") as f:  # truncate, half, pause, the rest
                f.write(head)
                f.flush()
                await asyncio.sleep(pause)
                f.write(tail)
            # One settle time later the whole file is applied, and only it.
            await wait_until("the reload", partial(reloaded, n), 8)
        await asyncio.sleep(0.5)
        done.set()

    async with aiohttp.ClientSession() as session, asyncio.timeout(30):
        await asyncio.gather(writer(), *(client(session, m) for m in ("chat", "late") * 4))
    reloads = gw.events("config_reloaded", mark)
    assert len(reloads) == 3, gw.output()
    assert all("routes_removed" not in r and "upstreams_removed" not in r for r in reloads)
    assert all(r["stats_reset"] == [] for r in reloads)
    assert set(statuses) == {200}, statuses
    assert statuses[200] > 100
