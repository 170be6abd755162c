"""`[server] workers = 2`: one supervisor, workers on one port; reload, sd_notify and stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
from e2e.e2e_harness import (
    FakeStarter,
    GatewayStarter,
    chat_body,
    config_dict,
    next_state_message,
    raw_request,
    sse_data,
    upstream_entry,
    wait_until,
    write_config,
)

from proxy.fake.behaviour import Behaviour

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    return True


async def test_two_workers_serve_reload_and_stop(
    tmp_path: Path,
    fake_upstreams: FakeStarter,
    spawn_gateway: GatewayStarter,
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, sock_path = notify_socket
    a = await fake_upstreams("a", Behaviour(chunks=2))
    b = await fake_upstreams("b", Behaviour(chunks=2))
    path = tmp_path / "gateway.toml"

    def config(up: str) -> dict[str, object]:
        return config_dict(
            {"a": upstream_entry(a, "model-a"), "b": upstream_entry(b, "model-b")},
            {"chat": {"tiers": [{up: 1}]}},
            workers=2,
        )

    write_config(path, config("a"))
    gw = spawn_gateway(path, env={"NOTIFY_SOCKET": sock_path})
    address = await gw.wait_ready(timeout_s=20)
    ready = await next_state_message(sock)
    assert ready.get("READY") == "1", ready
    pids = [int(str(e["pid"])) for e in gw.events("worker_started")]
    assert len(pids) == 2

    async def upstreams(n: int) -> set[str | None]:
        seen: set[str | None] = set()
        for _ in range(n):
            # A fresh connection each time, so SO_REUSEPORT may pick either worker.
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
                session.post(
                    f"{address}/v1/chat/completions",
                    data=chat_body("chat", stream=False),
                    headers={"Content-Type": "application/json"},
                ) as resp,
            ):
                await resp.read()
                assert resp.status == 200
                seen.add(resp.headers.get("x-gateway-upstream"))
        return seen

    assert await upstreams(10) == {"a"}

    write_config(path, config("b"))
    gw.signal(signal.SIGHUP)
    reloading = await next_state_message(sock)
    assert reloading.get("RELOADING") == "1", reloading
    assert int(reloading["MONOTONIC_USEC"]) > 0
    ready = await next_state_message(sock)
    assert ready.get("READY") == "1", ready
    assert "failed" not in ready.get("STATUS", ""), ready
    assert await upstreams(10) == {"b"}  # every worker reloaded, not just one

    gw.signal(signal.SIGTERM)
    stopping = await next_state_message(sock)
    assert stopping.get("STOPPING") == "1", stopping
    assert await gw.wait_exit(15) == 0
    await wait_until("both workers gone", lambda: not any(alive(p) for p in pids))


async def test_two_workers_drain_streams_and_replace_a_dead_worker(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    a = await fake_upstreams("a", Behaviour(chunks=8, chunk_delay_s=0.15))
    path = tmp_path / "gateway.toml"
    config = config_dict(
        {"a": upstream_entry(a, "model-a")}, {"chat": {"tiers": [{"a": 1}]}}, workers=2
    )
    write_config(path, config)
    gw = spawn_gateway(path)
    await gw.wait_ready(timeout_s=20)
    first = [int(str(e["pid"])) for e in gw.events("worker_started")]
    assert len(first) == 2

    # A worker that dies is replaced, and the port keeps serving meanwhile.
    mark = gw.mark()
    os.kill(first[0], signal.SIGKILL)
    await gw.wait_event("worker_died", start=mark, timeout_s=5)
    restarted = await gw.wait_event("worker_started", start=mark, timeout_s=10)
    assert int(str(restarted["pid"])) not in first
    await gw.wait_event("ready", start=mark, timeout_s=10, where=lambda e: "worker" in e)

    # SIGTERM to the parent drains every worker: streams in flight on both finish cleanly.
    streams = [
        asyncio.ensure_future(
            raw_request(gw.port, "POST", "/v1/chat/completions", chat_body("chat", stream=True))
        )
        for _ in range(6)
    ]
    await asyncio.sleep(0.4)
    gw.signal(signal.SIGTERM)
    for response in await asyncio.gather(*streams):
        assert response.status == 200
        assert response.clean_end
        assert sse_data(response.body)[-1] == b"[DONE]"
    assert await gw.wait_exit(15) == 0
