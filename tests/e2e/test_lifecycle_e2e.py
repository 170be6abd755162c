"""Process lifecycle: SIGTERM drain with live streams, sd_notify, `gateway check`, bad configs."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from e2e.e2e_harness import (
    GATEWAY_CMD,
    FakeStarter,
    GatewayStarter,
    RawResponse,
    chat_body,
    child_env,
    config_dict,
    connect_refused,
    next_state_message,
    raw_request,
    replace_file,
    sse_data,
    upstream_entry,
    wait_until,
    write_config,
)

from proxy.fake.behaviour import Behaviour

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)

DRAIN_S = 2.0


async def test_sigterm_drains_streams_then_ends_the_rest_cleanly(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    short = await fake_upstreams("short", Behaviour(chunks=5, chunk_delay_s=0.2))
    long = await fake_upstreams("long", Behaviour(chunks=50, chunk_delay_s=0.2))
    path = tmp_path / "gateway.toml"
    write_config(
        path,
        config_dict(
            {"short": upstream_entry(short, "m-short"), "long": upstream_entry(long, "m-long")},
            {"short": {"tiers": [{"short": 1}]}, "long": {"tiers": [{"long": 1}]}},
            drain_timeout_s=DRAIN_S,
        ),
    )
    gw = spawn_gateway(path)
    await gw.wait_ready()
    port = gw.port
    started = time.monotonic()
    sigterm_at: list[float] = []
    refused_at: list[float] = []

    async def terminate() -> None:
        await asyncio.sleep(0.3)
        await wait_until("both streams running", lambda: short.inflight + long.inflight == 2)
        sigterm_at.append(time.monotonic())
        gw.signal(signal.SIGTERM)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if await connect_refused(port):
                refused_at.append(time.monotonic())
                return
            await asyncio.sleep(0.02)

    async def stream(route: str) -> RawResponse:
        return await raw_request(
            port, "POST", "/v1/chat/completions", chat_body(route, stream=True), timeout_s=12
        )

    async with asyncio.timeout(15):
        short_resp, long_resp, _ = await asyncio.gather(
            stream("short"), stream("long"), terminate()
        )
        code = await gw.wait_exit(DRAIN_S + 6)
    term = sigterm_at[0]
    assert term - started < 1.0

    # The short stream finished normally during the drain.
    assert short_resp.status == 200
    assert short_resp.clean_end, short_resp
    short_events = sse_data(short_resp.body)
    assert short_events[-1] == b"[DONE]"
    assert not any(b'"error"' in e for e in short_events)
    assert short_resp.ended_at < term + DRAIN_S

    # The long one was ended at the drain timeout with an in-band error and a clean chunked end.
    assert long_resp.status == 200
    assert long_resp.clean_end, f"truncated chunked body: {long_resp.body[-300:]!r}"
    long_events = sse_data(long_resp.body)
    assert b"[DONE]" not in long_events
    last = orjson.loads(long_events[-1])
    assert last["error"]["code"] == "server_shutting_down", last
    assert set(last["error"]) >= {"message", "type", "param", "code"}
    assert term + DRAIN_S - 0.3 <= long_resp.ended_at <= term + DRAIN_S + 2.0
    assert len(long_events) > 5  # it was streaming content until then

    # New connections were refused soon after SIGTERM, and the process exited 0 in time.
    assert refused_at, "the gateway still accepted connections 1 s after SIGTERM"
    assert refused_at[0] - term < 1.0
    assert code == 0, gw.output()
    await wait_until("the long upstream attempt cancelled", lambda: bool(long.disconnects))
    assert gw.events("draining")
    ended = gw.events("drain_timeout")
    assert ended
    assert ended[0]["streams_ended"] == 1
    stopped = gw.events("stopped")
    assert stopped
    assert stopped[0]["drained"] is False


async def open_idle_keepalive(port: int, n: int) -> list[asyncio.StreamReader]:
    """n connections that each finished one request and stay open (HTTP/1.1 keep-alive)."""
    readers: list[asyncio.StreamReader] = []
    for _ in range(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(ln.split(b":")[1])
                for ln in head.split(b"\r\n")
                if ln.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
        assert head.startswith(b"HTTP/1.1 200"), head
        readers.append(reader)
    return readers


async def test_idle_keepalive_closed_and_second_sigterm_ignored_during_drain(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    """J2 + J3: idle keep-alive connections close at once; a second SIGTERM never hangs."""
    long = await fake_upstreams("long", Behaviour(chunks=50, chunk_delay_s=0.2))
    path = tmp_path / "gateway.toml"
    write_config(
        path,
        config_dict(
            {"long": upstream_entry(long, "m")},
            {"chat": {"tiers": [{"long": 1}]}},
            drain_timeout_s=DRAIN_S,
        ),
    )
    gw = spawn_gateway(path)
    await gw.wait_ready()
    idle = await open_idle_keepalive(gw.port, 10)
    streaming = asyncio.ensure_future(
        raw_request(gw.port, "POST", "/v1/chat/completions", chat_body("chat", stream=True))
    )
    try:
        await wait_until("the stream running", lambda: long.inflight == 1)
        term = time.monotonic()
        gw.signal(signal.SIGTERM)
        async with asyncio.timeout(3):
            for reader in idle:
                assert await reader.read() == b""
        closed = time.monotonic() - term
        await asyncio.sleep(0.3)
        assert gw.proc.poll() is None  # still draining the stream
        gw.signal(signal.SIGTERM)  # the second one: the drain goes on as documented
        async with asyncio.timeout(DRAIN_S + 6):
            resp = await streaming
        code = await gw.wait_exit(DRAIN_S + 6)
    finally:
        streaming.cancel()
    assert closed < 1.0, f"idle keep-alive connections closed only after {closed:.2f}s"
    assert code == 0, gw.output()
    assert resp.clean_end
    last = orjson.loads(sse_data(resp.body)[-1])
    assert last["error"]["code"] == "server_shutting_down"


async def test_sigterm_after_shutdown_still_exits_zero(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    """A repeated SIGTERM (an impatient operator, a supervisor) must not turn a clean exit
    into death by signal while the interpreter tears down after the `stopped` event."""
    fake = await fake_upstreams("f")
    path = tmp_path / "gateway.toml"
    write_config(
        path, config_dict({"f": upstream_entry(fake, "m")}, {"chat": {"tiers": [{"f": 1}]}})
    )
    gw = spawn_gateway(path)
    await gw.wait_ready()
    gw.signal(signal.SIGTERM)
    await gw.wait_event("stopped")
    deadline = time.monotonic() + 5
    while gw.proc.poll() is None and time.monotonic() < deadline:
        gw.signal(signal.SIGTERM)
        await asyncio.sleep(0.01)
    code = await gw.wait_exit(5)
    assert code == 0, f"exit status {code}: killed by a SIGTERM after the drain had finished"


async def test_sd_notify_ready_reload_stopping(
    tmp_path: Path,
    fake_upstreams: FakeStarter,
    spawn_gateway: GatewayStarter,
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, sock_path = notify_socket
    fake = await fake_upstreams("f")
    path = tmp_path / "gateway.toml"

    def config(weight: int) -> dict[str, object]:
        return config_dict({"f": upstream_entry(fake, "m")}, {"chat": {"tiers": [{"f": weight}]}})

    write_config(path, config(1))
    gw = spawn_gateway(path, env={"NOTIFY_SOCKET": sock_path})
    ready = await next_state_message(sock, timeout_s=15)
    assert ready.get("READY") == "1", ready
    address = await gw.wait_ready()
    assert address in ready.get("STATUS", ""), ready
    # READY=1 came after the listener was bound.
    assert not await connect_refused(gw.port)

    # A valid reload: RELOADING=1 with a CLOCK_MONOTONIC timestamp, then READY=1.
    write_config(path, config(2))
    before = time.monotonic_ns() // 1000
    gw.signal(signal.SIGHUP)
    reloading = await next_state_message(sock)
    after = time.monotonic_ns() // 1000
    assert reloading.get("RELOADING") == "1", reloading
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after
    ready = await next_state_message(sock)
    assert ready.get("READY") == "1", ready
    assert "reload failed" not in ready.get("STATUS", "")
    await gw.wait_event("config_reloaded")

    # A failed reload still answers READY=1, with a STATUS saying so.
    replace_file(path, "[server\nlisten = \n")
    gw.signal(signal.SIGHUP)
    reloading = await next_state_message(sock)
    assert reloading.get("RELOADING") == "1", reloading
    assert int(reloading["MONOTONIC_USEC"]) > 0
    ready = await next_state_message(sock)
    assert ready.get("READY") == "1", ready
    assert "reload failed" in ready.get("STATUS", ""), ready
    await gw.wait_event("config_reload_failed")

    gw.signal(signal.SIGTERM)
    stopping = await next_state_message(sock)
    assert stopping.get("STOPPING") == "1", stopping
    assert await gw.wait_exit(DRAIN_S + 6) == 0


def run_gateway(*args: str, env_drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GATEWAY_CMD, *args],
        capture_output=True,
        text=True,
        timeout=20,
        env=child_env(drop=env_drop),
        check=False,
    )


BROKEN = """
[server]
listen = "127.0.0.1:0"

[upstreams.a]
provider = "openai"
base_url = "ftp://127.0.0.1:1/v1"

[routes.chat]
strategy = "fastest"
tiers = [{ a = 1, nope = 1 }]
"""


def test_check_names_toml_paths_of_errors(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(BROKEN)
    done = run_gateway("check", "--config", str(path))
    assert done.returncode == 1, done
    err = done.stderr
    assert "upstreams.a.base_url" in err, err
    assert "routes.chat.strategy" in err, err
    assert 'routes.chat.tiers[0]: unknown upstream "nope"' in err, err
    assert "error(s)" in err

    path.write_text('[server]\nlisten = "127.0.0.1:0"\n[routes.chat\n')
    done = run_gateway("check", "--config", str(path))
    assert done.returncode == 1, done
    assert "TOML syntax" in done.stderr
    assert "line 3" in done.stderr, done.stderr


def test_check_prints_the_routing_table(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        """
[server]
listen = "127.0.0.1:0"

[upstreams.a]
base_url = "http://127.0.0.1:9/v1"
model = "model-a"

[upstreams.b]
base_url = "http://127.0.0.1:10/v1"
model = "model-b"

[routes.chat]
strategy = "weighted"
tiers = [{ a = 3, b = 1 }, { b = 1 }]
"""
    )
    done = run_gateway("check", "--config", str(path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "upstreams:" in out
    assert "a: openai http://127.0.0.1:9/v1 model=model-a" in out, out
    assert "chat: strategy=weighted" in out, out
    assert "tier 0: a=3, b=1" in out, out
    assert "tier 1: b=1" in out, out


def test_missing_env_credential_is_named(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        """
[upstreams.a]
base_url = "http://127.0.0.1:9/v1"
credential = "env:E2E_MISSING_KEY"

[routes.chat]
tiers = [{ a = 1 }]
"""
    )
    done = run_gateway("check", "--config", str(path), env_drop=("E2E_MISSING_KEY",))
    assert done.returncode == 1, done
    assert "upstreams.a.credential" in done.stderr, done.stderr
    assert "E2E_MISSING_KEY" in done.stderr, done.stderr


async def test_serve_refuses_a_broken_config(tmp_path: Path, spawn_gateway: GatewayStarter) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(BROKEN)
    no_key = tmp_path / "nokey.toml"
    no_key.write_text(
        '[upstreams.a]\nbase_url = "http://127.0.0.1:9/v1"\ncredential = "env:E2E_MISSING_KEY"\n'
        "[routes.chat]\ntiers = [{ a = 1 }]\n"
    )
    first = spawn_gateway(broken)
    second = spawn_gateway(no_key, drop_env=("E2E_MISSING_KEY",))
    assert await first.wait_exit(15) == 1
    assert await second.wait_exit(15) == 1
    errors = [str(e.get("error")) for e in first.events("config_invalid")]
    assert any('routes.chat.tiers[0]: unknown upstream "nope"' in e for e in errors), errors
    assert any("upstreams.a.base_url" in e for e in errors), errors
    assert not first.events("ready")
    errors = [str(e.get("error")) for e in second.events("config_invalid")]
    assert any("upstreams.a.credential" in e and "E2E_MISSING_KEY" in e for e in errors), errors
    assert not second.events("ready")
