"""Streaming and plain chat through a real gateway process: curl -N timing, the official SDK."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import openai
import pytest
from e2e.e2e_harness import (
    FakeStarter,
    GatewayProcess,
    GatewayStarter,
    chat_body,
    config_dict,
    upstream_entry,
    write_config,
)

from proxy.fake.behaviour import Behaviour
from proxy.fake.server import FakeProvider

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)

UPSTREAM_KEY = "sk-upstream-e2e-0123456789"
CLIENT_KEY = "sk-client-e2e-must-not-leak"
UPSTREAM_MODEL = "fake-upstream-model-id"
TEXT = "Hello from the fake upstream"


async def start_one(
    tmp_path: Path,
    fake_upstreams: FakeStarter,
    spawn_gateway: GatewayStarter,
    behaviour: Behaviour,
    *,
    credential: bool = False,
) -> tuple[FakeProvider, GatewayProcess]:
    fake = await fake_upstreams("primary", behaviour)
    extra = {"credential": "env:FAKE_KEY"} if credential else {}
    path = tmp_path / "gateway.toml"
    write_config(
        path,
        config_dict(
            {"primary": upstream_entry(fake, UPSTREAM_MODEL, **extra)},
            {"chat": {"tiers": [{"primary": 1}]}},
        ),
    )
    gw = spawn_gateway(path, env={"FAKE_KEY": UPSTREAM_KEY})
    await gw.wait_ready()
    return fake, gw


def header_block(raw: str) -> dict[str, str]:
    """The last header block curl -D wrote (lower-cased names)."""
    blocks = [b for b in raw.replace("\r\n", "\n").split("\n\n") if b.strip()]
    lines = blocks[-1].splitlines()
    assert lines[0].startswith("HTTP/1.1 200"), lines[0]
    out: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        out[name.strip().lower()] = value.strip()
    return out


async def test_curl_sees_first_chunk_before_upstream_sends_second(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    _fake, gw = await start_one(
        tmp_path, fake_upstreams, spawn_gateway, Behaviour(chunk_delay_s=1.0, chunks=3)
    )
    headers_file = tmp_path / "headers.txt"
    # curl's own clock starts here; the upstream cannot send tok1 before start + 1.0 s.
    started = time.monotonic()
    curl = await asyncio.create_subprocess_exec(
        "curl",
        "-N",
        "-sS",
        "--max-time",
        "15",
        "-D",
        str(headers_file),
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        chat_body("chat", stream=True).decode(),
        f"{gw.address}/v1/chat/completions",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[tuple[float, str]] = []
    try:
        assert curl.stdout is not None
        async with asyncio.timeout(15):
            while raw := await curl.stdout.readline():
                lines.append((time.monotonic() - started, raw.decode().rstrip("\n")))
            _, err = await curl.communicate()
    finally:
        if curl.returncode is None:
            curl.kill()
            await curl.wait()
    assert curl.returncode == 0, err.decode()
    data = [(t, line) for t, line in lines if line.startswith("data:")]
    assert data, lines
    assert data[-1][1] == "data: [DONE]"

    def arrival(token: str) -> float:
        return next(t for t, line in data if f'"content":"{token}"' in line.replace(" ", ""))

    first, tok0, tok1, tok2 = data[0][0], arrival("tok0"), arrival("tok1"), arrival("tok2")
    # Unbuffered: each chunk is at the client before the upstream sends the next one (1 s
    # later), so the first arrives before the upstream could have sent the second at all.
    assert first < 0.9, data
    assert tok0 < 0.9, data
    assert tok1 - tok0 >= 0.8, data
    assert tok2 - tok1 >= 0.8, data
    headers = header_block(headers_file.read_text())
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-gateway-upstream"] == "primary"
    assert headers["x-gateway-attempts"] == "1"
    assert headers["x-request-id"]


async def test_openai_sdk_non_streaming(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    fake, gw = await start_one(
        tmp_path,
        fake_upstreams,
        spawn_gateway,
        Behaviour(text=TEXT, chunks=4, prompt_tokens=11),
        credential=True,
    )
    client = openai.AsyncOpenAI(
        base_url=f"{gw.address}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10.0
    )
    async with client:
        raw = await client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )
        completion = raw.parse()
    assert raw.status_code == 200
    assert completion.choices[0].message.content == TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 11
    assert completion.usage.completion_tokens == 4
    assert completion.usage.total_tokens == 15
    assert raw.headers["x-gateway-upstream"] == "primary"
    assert raw.headers["x-gateway-attempts"] == "1"
    rid = raw.headers["x-request-id"]
    assert rid

    assert len(fake.requests) == 1
    seen = fake.requests[0]
    assert seen.path == "/v1/chat/completions"
    assert seen.json()["model"] == UPSTREAM_MODEL
    assert seen.header("x-request-id") == rid
    assert_credentials(seen.headers)
    assert_no_secret_in_logs(gw)


async def test_openai_sdk_streaming_keeps_request_id(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    fake, gw = await start_one(
        tmp_path,
        fake_upstreams,
        spawn_gateway,
        Behaviour(text=TEXT, chunks=4, prompt_tokens=11, chunk_delay_s=0.02),
        credential=True,
    )
    client = openai.AsyncOpenAI(
        base_url=f"{gw.address}/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10.0
    )
    pieces: list[str] = []
    usage = None
    async with client:
        raw = await client.chat.completions.with_raw_response.create(
            model="chat",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": "e2e-req-42"},
        )
        stream = raw.parse()
        async with asyncio.timeout(10):
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                if chunk.usage is not None:
                    usage = chunk.usage
    assert "".join(pieces) == TEXT
    assert len(pieces) == 4
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (11, 4, 15)
    assert raw.headers["x-request-id"] == "e2e-req-42"
    assert raw.headers["x-gateway-upstream"] == "primary"
    assert raw.headers["x-gateway-attempts"] == "1"
    assert raw.headers["content-type"].startswith("text/event-stream")

    assert len(fake.requests) == 1
    seen = fake.requests[0]
    body = seen.json()
    assert body["model"] == UPSTREAM_MODEL
    assert body["stream"] is True
    assert seen.header("x-request-id") == "e2e-req-42"
    assert_credentials(seen.headers)
    access = await gw.wait_event("access", where=lambda e: e.get("request_id") == "e2e-req-42")
    assert access["status"] == 200
    assert access["upstream"] == "primary"
    assert_no_secret_in_logs(gw)


def assert_credentials(headers: tuple[tuple[str, str], ...]) -> None:
    """The upstream got the gateway's credential, and nothing the client authenticated with."""
    auth = [v for k, v in headers if k.lower() == "authorization"]
    assert auth == [f"Bearer {UPSTREAM_KEY}"]
    for name, value in headers:
        assert CLIENT_KEY not in value, f"client key forwarded in {name}"


def assert_no_secret_in_logs(gw: GatewayProcess) -> None:
    text = gw.output()
    assert UPSTREAM_KEY not in text
    assert CLIENT_KEY not in text
