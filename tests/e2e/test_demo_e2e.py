"""`gateway demo` on a copy of the shipped gateway.toml: fakes and gateway come up, curl streams."""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import orjson
import pytest
from e2e.e2e_harness import REPO, GatewayStarter, chat_body, connect_refused, free_port

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)


def demo_config(tmp_path: Path) -> tuple[Path, int, int]:
    """The shipped file with listen on port 0 and the two fake ports moved to free ones."""
    text = (REPO / "gateway.toml").read_text("utf-8")
    port_a, port_b = free_port(), free_port()
    while port_b == port_a:
        port_b = free_port()
    text, n_listen = re.subn(r'(?m)^listen = "[^"]*"', 'listen = "127.0.0.1:0"', text)
    text, n_a = re.subn(r"127\.0\.0\.1:9001\b", f"127.0.0.1:{port_a}", text)
    text, n_b = re.subn(r"127\.0\.0\.1:9002\b", f"127.0.0.1:{port_b}", text)
    assert (n_listen, n_a, n_b) == (1, 1, 1), "the shipped gateway.toml changed shape"
    path = tmp_path / "gateway.toml"
    path.write_text(text, "utf-8")
    return path, port_a, port_b


async def test_demo_streams_a_completion_with_curl(
    tmp_path: Path, spawn_gateway: GatewayStarter
) -> None:
    path, port_a, port_b = demo_config(tmp_path)
    gw = spawn_gateway(path, command="demo")
    address = await gw.wait_ready()
    fakes = {str(e["url"]) for e in gw.events("demo_fake_upstream")}
    assert fakes == {f"http://127.0.0.1:{port_a}/v1", f"http://127.0.0.1:{port_b}/v1"}

    curl = await asyncio.create_subprocess_exec(
        "curl",
        "-N",
        "-sS",
        "--fail-with-body",
        "--max-time",
        "15",
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        chat_body("chat-fast", stream=True).decode(),
        f"{address}/v1/chat/completions",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(15):
            out, err = await curl.communicate()
    finally:
        if curl.returncode is None:
            curl.kill()
            await curl.wait()
    assert curl.returncode == 0, (out, err)
    data = [ln[6:] for ln in out.decode().splitlines() if ln.startswith("data: ")]
    assert data[-1] == "[DONE]", data
    chunks = [orjson.loads(d) for d in data[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == " ".join(f"tok{i}" for i in range(12))
    assert {c["model"] for c in chunks} <= {"fake-model-a", "fake-model-b"}

    access = await gw.wait_event("access")
    assert access["status"] == 200
    assert access["upstream"] in ("local-a", "local-b")

    gw.signal(signal.SIGTERM)
    assert await gw.wait_exit(10) == 0
    # The demo's fakes went away with it.
    assert await connect_refused(port_a)
    assert await connect_refused(port_b)
