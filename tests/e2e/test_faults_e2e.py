"""Upstream faults through a real gateway process: keep-alive-only streams fail over for the
OpenAI SDK; curl's `Expect: 100-continue` with a too-large body gets 413 before uploading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
from aiohttp import web
from e2e.e2e_harness import (
    FakeStarter,
    GatewayStarter,
    config_dict,
    upstream_entry,
    write_config,
)

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)


@pytest.fixture
async def keepalive_only() -> AsyncIterator[str]:
    """An upstream on 127.0.0.1 that answers 200 and then only sends `: keepalive` for 5 s."""

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for _ in range(50):
                await resp.write(b": keepalive\n\n")
                await asyncio.sleep(0.1)
            await resp.write_eof()
        except ConnectionError:
            pass  # the gateway gave up on it, as it should
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    await runner.cleanup()


async def test_the_sdk_gets_a_whole_stream_when_the_first_upstream_sends_only_comments(
    tmp_path: Path,
    fake_upstreams: FakeStarter,
    spawn_gateway: GatewayStarter,
    keepalive_only: str,
) -> None:
    good = await fake_upstreams("good")
    path = tmp_path / "gateway.toml"
    write_config(
        path,
        config_dict(
            {
                "silent": {"base_url": keepalive_only, "ttfb_timeout_s": 0.8},
                "good": upstream_entry(good, "good-model"),
            },
            {"chat": {"tiers": [{"silent": 1}, {"good": 1}]}},
        ),
    )
    gw = spawn_gateway(path)
    address = await gw.wait_ready()
    client = openai.AsyncOpenAI(base_url=address + "/v1", api_key="k", max_retries=0, timeout=10)
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert raw.headers["x-gateway-upstream"] == "good"
        assert raw.headers["x-gateway-attempts"] == "2"
        text = ""
        async for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
        assert text
    finally:
        await client.close()
    access = await gw.wait_event("access")
    assert (access["upstream"], access["attempts"], access["status"]) == ("good", 2, 200)
    failed = gw.events("attempt_failed")
    assert [(e["upstream"], e["failure"]) for e in failed] == [("silent", "ttfb_timeout")]


async def test_curl_expect_continue_with_a_too_large_body_gets_413_before_uploading(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    fake = await fake_upstreams("a")
    path = tmp_path / "gateway.toml"
    write_config(
        path,
        config_dict(
            {"a": upstream_entry(fake, "m")}, {"chat": {"tiers": [{"a": 1}]}}, max_body_mb=1
        ),
    )
    big = tmp_path / "big.json"
    big.write_bytes(b'{"model": "chat", "pad": "' + b"x" * (3 * 2**20) + b'"}')
    gw = spawn_gateway(path)
    address = await gw.wait_ready()
    curl = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "-v",
        "--max-time",
        "15",
        "--expect100-timeout",
        "10",
        "-H",
        "Content-Type: application/json",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        f"@{big}",
        "-o",
        str(tmp_path / "out.json"),
        "-w",
        "%{http_code} %{size_upload}",
        f"{address}/v1/chat/completions",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        out, err = await curl.communicate()
    code, uploaded = out.decode().split()
    assert code == "413"
    assert int(uploaded) < 2**20  # the body was not sent (curl stops on the early answer)
    assert b"100 Continue" not in err
    assert b"request_too_large" in (tmp_path / "out.json").read_bytes()
    assert len(fake.requests) == 0
