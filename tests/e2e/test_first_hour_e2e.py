"""What a new operator meets first: start-up failures, honest /readyz, request ids, the SDK."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import openai
import orjson
import pytest
from e2e.e2e_harness import (
    REPO,
    FakeStarter,
    GatewayStarter,
    chat_body,
    config_dict,
    free_port,
    upstream_entry,
    wait_until,
    write_config,
)

from proxy.fake.behaviour import Behaviour

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)

TIMEOUT = aiohttp.ClientTimeout(total=10)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process (this test) already listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_busy_port_is_one_line_and_exit_1(
    tmp_path: Path,
    fake_upstreams: FakeStarter,
    spawn_gateway: GatewayStarter,
    busy_port: int,
    workers: int,
) -> None:
    a = await fake_upstreams("a")
    path = tmp_path / "gateway.toml"
    listen = f"127.0.0.1:{busy_port}"
    routes = {"chat": {"tiers": [{"a": 1}]}}
    write_config(
        path, config_dict({"a": upstream_entry(a, "m")}, routes, listen=listen, workers=workers)
    )
    gw = spawn_gateway(path)
    assert await gw.wait_exit(15) == 1
    lines = [ln.raw for ln in gw.snapshot()]
    assert len(lines) == 1, gw.output()
    line = orjson.loads(lines[0])
    assert (line["event"], line["level"]) == ("startup_failed", "error")
    assert line["error"].startswith(f"server.listen: {listen} is already in use"), line
    assert "[server] listen" in line["error"]
    assert gw.stderr == [], gw.output()  # no traceback, no interpreter noise


async def test_an_unreadable_config_is_one_line_and_exit_1(
    tmp_path: Path, spawn_gateway: GatewayStarter
) -> None:
    gw = spawn_gateway(tmp_path / "missing.toml")
    assert await gw.wait_exit(15) == 1
    (line,) = [ln.obj for ln in gw.snapshot()]
    assert line is not None and line["event"] == "config_invalid"
    assert "--config" in str(line["error"]) and "missing.toml" in str(line["error"])
    assert gw.stderr == [], gw.output()


async def readyz(session: aiohttp.ClientSession, address: str) -> tuple[int, dict[str, object]]:
    async with session.get(address + "/readyz") as r:
        return r.status, orjson.loads(await r.read())


async def test_readyz_states_through_ejection_probe_and_recovery(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    a = await fake_upstreams("a", Behaviour(status=500))
    path = tmp_path / "gateway.toml"
    config = config_dict({"a": upstream_entry(a, "m")}, {"chat": {"tiers": [{"a": 1}]}})
    config["defaults"] = {
        "max_attempts": 1,
        "panic": False,
        "ejection": {"consecutive_failures": 1, "base_s": 1, "jitter": 0},
    }
    write_config(path, config)
    gw = spawn_gateway(path)
    address = await gw.wait_ready()
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        status, body = await readyz(session, address)
        assert (status, body["upstreams"]) == (200, {"a": {"state": "healthy"}})

        async with session.post(
            address + "/v1/chat/completions", data=chat_body("chat", stream=False)
        ) as r:
            assert r.status == 502
        ejected = await gw.wait_event("upstream_ejected")
        assert (ejected["duration_s"], ejected["streak"], ejected["failure"]) == (
            1.0,
            1,
            "upstream_5xx",
        )
        access = await gw.wait_event("access")
        assert (access["level"], access["error"], access["status"]) == (
            "warning",
            "upstream_error",
            502,
        )
        status, body = await readyz(session, address)
        a_state = body["upstreams"]["a"]  # type: ignore[index]
        assert (status, body["status"]) == (503, "degraded")
        assert a_state["state"] == "ejected" and a_state["failure"] == "upstream_5xx"
        assert 0 < a_state["in_s"] <= 1.0 and str(a_state["until"]).endswith("Z")

        # The ejection is over: selectable again, but not called healthy before a probe.
        await asyncio.sleep(1.1)
        status, body = await readyz(session, address)
        assert (status, body["upstreams"]) == (
            200,
            {"a": {"state": "probe_pending", "failure": "upstream_5xx"}},
        )

        a.default = Behaviour()
        async with session.post(
            address + "/v1/chat/completions", data=chat_body("chat", stream=False)
        ) as r:
            assert r.status == 200
        recovered = await gw.wait_event("upstream_recovered")
        assert recovered["upstream"] == "a" and recovered["down_s"] >= 1.0  # type: ignore[operator]
        status, body = await readyz(session, address)
        assert (status, body["upstreams"]) == (200, {"a": {"state": "healthy"}})


async def test_every_kind_of_answer_carries_a_request_id(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    a = await fake_upstreams("a")
    path = tmp_path / "gateway.toml"
    write_config(path, config_dict({"a": upstream_entry(a, "m")}, {"chat": {"tiers": [{"a": 1}]}}))
    gw = spawn_gateway(path)
    address = await gw.wait_ready()
    asks = [
        ("GET", "/v1/models", b"", 200),
        ("GET", "/v1/models/chat", b"", 200),
        ("GET", "/healthz", b"", 200),
        ("GET", "/readyz", b"", 200),
        ("GET", "/nope", b"", 404),
        ("PUT", "/healthz", b"", 405),
        ("POST", "/v1/chat/completions", b"[]", 400),
        ("POST", "/v1/chat/completions", chat_body("chat", stream=False), 200),
        ("POST", "/v1/chat/completions", chat_body("chat", stream=True), 200),
    ]
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for method, url_path, body, expected in asks:
            async with session.request(method, address + url_path, data=body) as r:
                await r.read()
                assert r.status == expected, (method, url_path)
                assert r.headers.get("x-request-id"), (method, url_path)


async def test_models_retrieve_with_the_sdk(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    a = await fake_upstreams("a")
    path = tmp_path / "gateway.toml"
    write_config(
        path, config_dict({"a": upstream_entry(a, "m")}, {"chat-fast": {"tiers": [{"a": 1}]}})
    )
    gw = spawn_gateway(path)
    address = await gw.wait_ready()
    client = openai.AsyncOpenAI(base_url=address + "/v1", api_key="unused", max_retries=0)
    try:
        got = await client.models.retrieve("chat-fast")
        assert (got.id, got.object) == ("chat-fast", "model")
        listed = [m.id async for m in client.models.list()]
        assert listed == ["chat-fast"]
        with pytest.raises(openai.NotFoundError) as caught:
            await client.models.retrieve("gpt-unknown")
        assert caught.value.code == "model_not_found"
    finally:
        await client.close()


async def test_demo_on_other_ports_says_what_to_try(
    tmp_path: Path, spawn_gateway: GatewayStarter
) -> None:
    shipped = (REPO / "gateway.toml").read_text("utf-8")
    path = tmp_path / "gateway.toml"
    path.write_text(shipped, "utf-8")
    port, fake = free_port(), free_port()
    while fake in (port, port - 1) or fake + 1 == port:
        fake = free_port()
    gw = spawn_gateway(path, command="demo", args=["--port", str(port), "--fake-port", str(fake)])
    address = await gw.wait_ready()
    assert address == f"http://127.0.0.1:{port}"
    urls = sorted(str(e["url"]) for e in gw.events("demo_fake_upstream"))
    assert urls == [f"http://127.0.0.1:{fake}/v1", f"http://127.0.0.1:{fake + 1}/v1"]
    await wait_until("the what-to-try line", lambda: bool(gw.stderr))
    (hint,) = gw.stderr
    assert hint.startswith("demo ready; try: curl -N " + address + "/v1/chat/completions")
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        started = time.monotonic()
        async with session.post(
            address + "/v1/chat/completions", data=chat_body("chat-fast", stream=False)
        ) as r:
            assert r.status == 200, await r.text()
        assert time.monotonic() - started < 5


async def test_demo_on_a_busy_port_is_one_error_line_and_exit_1(
    tmp_path: Path, spawn_gateway: GatewayStarter, busy_port: int
) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text((REPO / "gateway.toml").read_text("utf-8"), "utf-8")
    fake = free_port()
    while abs(fake - busy_port) < 2:
        fake = free_port()
    gw = spawn_gateway(
        path, command="demo", args=["--port", str(busy_port), "--fake-port", str(fake)]
    )
    assert await gw.wait_exit(15) == 1
    errors = [ln.obj for ln in gw.snapshot() if ln.obj and ln.obj["level"] == "error"]
    assert [e["event"] for e in errors] == ["startup_failed"], gw.output()
    assert "--port N" in str(errors[0]["error"])
    assert gw.stderr == [], gw.output()


async def test_a_deleted_config_file_is_said_and_its_return_confirmed(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    a = await fake_upstreams("a")
    path = tmp_path / "gateway.toml"
    config = config_dict({"a": upstream_entry(a, "m")}, {"chat": {"tiers": [{"a": 1}]}}, watch=True)
    write_config(path, config)
    text = path.read_text("utf-8")
    gw = spawn_gateway(path)
    await gw.wait_ready()
    await asyncio.sleep(0.3)  # the watcher is up
    mark = gw.mark()
    path.unlink()
    missing = await gw.wait_event("config_file_missing", start=mark)
    assert (missing["level"], missing["kept_generation"]) == ("warning", 1)
    mark = gw.mark()
    path.write_text(text, "utf-8")
    unchanged = await gw.wait_event("config_unchanged", start=mark)
    assert unchanged["outcome"] == "unchanged, config OK"
