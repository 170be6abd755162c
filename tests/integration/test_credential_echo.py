"""An upstream that echoes the gateway's credential back: no client and no log line sees it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from conftest import GatewayFactory, base_config

from proxy.ops import logs

CANARY = "sk-canary-7f3a9c0e1b2d4f68a5e7"


async def echoing(request: web.Request) -> web.StreamResponse:
    """Echoes the Authorization header it got, the way careless providers do, per mode."""
    auth = request.headers.get("Authorization", "")
    body = await request.json()
    mode = body["messages"][0]["content"]
    error = orjson.dumps({"error": {"message": f"bad key {auth}", "type": "invalid_request"}})
    echo = {"x-request-id": f"req {auth}", "openai-version": auth.removeprefix("Bearer ")}
    if mode in ("400", "500"):
        return web.Response(status=int(mode), body=error, headers=echo)
    out = web.StreamResponse(headers={"Content-Type": "text/event-stream", **echo})
    await out.prepare(request)
    event = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
    await out.write(event)
    whole = b"data: " + error + b"\n\n"
    # The credential split across three writes (and so, usually, three chunks).
    cut = whole.find(CANARY.encode()) + 5
    for part in (whole[:cut], whole[cut : cut + 9], whole[cut + 9 :]):
        await out.write(part)
        await asyncio.sleep(0.02)
    await out.write(b"data: [DONE]\n\n")
    await out.write_eof()
    return out


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", echoing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


@pytest.mark.parametrize(
    ("mode", "stream"), [("400", False), ("500", False), ("400", True), ("sse", True)]
)
async def test_echoed_credential_never_reaches_the_client_or_the_log(
    gateway: GatewayFactory,
    echo_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    mode: str,
    stream: bool,
) -> None:
    monkeypatch.setenv("ECHO_KEY", CANARY)
    config = base_config(
        {"echo": {"base_url": echo_url, "credential": "env:ECHO_KEY"}},
        {"chat": {"tiers": [{"echo": 1}], "max_attempts": 1}},
    )
    gw = await gateway(config)
    body = {"model": "chat", "stream": stream, "messages": [{"role": "user", "content": mode}]}
    async with (
        aiohttp.ClientSession() as s,
        s.post(gw.url + "/v1/chat/completions", data=orjson.dumps(body)) as r,
    ):
        data = await r.read()
        headers = dict(r.headers)
    logs.flush()
    seen = data.decode() + repr(headers) + capfd.readouterr().out
    assert CANARY not in seen
    assert CANARY[:12] not in seen  # not even a piece of it
    if mode == "400":
        assert r.status == 400
        assert b"bad key Bearer [redacted]" in data  # the rest of the message is kept
        assert headers["x-upstream-request-id"] == "req Bearer [redacted]"
    elif mode == "500":
        assert r.status == 502  # the gateway's own error, not the upstream's body
    else:
        assert r.status == 200
        assert data.startswith(b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n')
        assert b"bad key Bearer [redacted]" in data
        assert data.endswith(b"data: [DONE]\n\n")
        assert headers["openai-version"] == "[redacted]"
