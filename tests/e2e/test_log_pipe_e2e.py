"""A gateway whose stdout is a pipe nobody reads keeps serving; its lines arrive later."""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import orjson
import pytest
from e2e.e2e_harness import (
    GATEWAY_CMD,
    STOP_TIMEOUT_S,
    FakeStarter,
    RawResponse,
    chat_body,
    child_env,
    config_dict,
    raw_request,
    upstream_entry,
    write_config,
)

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)

ROUNDS = 6
PER_ROUND = 8


def read_some(fd: int, timeout_s: float) -> bytes:
    """What the pipe holds within `timeout_s` (b"" if nothing came)."""
    if select.select([fd], [], [], timeout_s)[0]:
        return os.read(fd, 65536)
    return b""


def fill(fd: int) -> None:
    """Write into the pipe until it is full: from now on every write of the gateway blocks."""
    os.set_blocking(fd, False)
    try:
        while True:
            os.write(fd, b"#" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(fd, True)


def events(data: bytes, name: str) -> list[dict[str, object]]:
    found = []
    for raw in data.split(b"\n"):
        text = raw.lstrip(b"#")
        if text.startswith(b"{"):
            obj = orjson.loads(text)
            if obj.get("event") == name:
                found.append(obj)
    return found


def start_gateway(config: Path, stdout: int, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*GATEWAY_CMD, "serve", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=child_env(),
        cwd=str(config.parent),
    )


async def chat(port: int) -> RawResponse:
    body = chat_body("chat", stream=False)
    return await raw_request(port, "POST", "/v1/chat/completions", body, timeout_s=5.0)


@pytest.fixture
def stdout_pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)  # the smallest pipe: it fills after a few lines
    yield r, w
    os.close(r)
    os.close(w)


async def test_requests_complete_while_stdout_is_not_read(
    tmp_path: Path, fake_upstreams: FakeStarter, stdout_pipe: tuple[int, int]
) -> None:
    r, w = stdout_pipe
    fake = await fake_upstreams("up")
    path = tmp_path / "gateway.toml"
    routes = {"chat": {"tiers": [{"up": 1}]}}
    write_config(path, config_dict({"up": upstream_entry(fake, "m")}, routes, drain_timeout_s=1))
    err = (tmp_path / "stderr.log").open("wb")
    proc = start_gateway(path, w, err)
    try:
        seen = b""
        deadline = time.monotonic() + 15.0
        while not (ready := events(seen, "ready")) and time.monotonic() < deadline:
            seen += await asyncio.to_thread(read_some, r, 0.2)
        assert ready, seen.decode("utf-8", "replace")
        port = int(str(ready[0]["address"]).rsplit(":", 1)[1])

        fill(w)  # the reader stops here
        for _ in range(ROUNDS):  # rounds apart: each one's lines are flushed into the full pipe
            answers = await asyncio.gather(*(chat(port) for _ in range(PER_ROUND)))
            assert [a.status for a in answers] == [200] * PER_ROUND
            await asyncio.sleep(0.1)
        assert proc.poll() is None

        # The reader resumes: every access line arrives, in order after the filler.
        later = b""
        deadline = time.monotonic() + 10.0
        while len(events(later, "access")) < ROUNDS * PER_ROUND and time.monotonic() < deadline:
            later += await asyncio.to_thread(read_some, r, 0.2)
        assert len(events(later, "access")) == ROUNDS * PER_ROUND
        assert events(later, "log_lines_dropped") == []  # far below the cap: nothing lost

        # Stopped while the reader is stuck again, the gateway still exits: flush is bounded.
        fill(w)
        answer = await chat(port)
        assert answer.status == 200
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 15.0)
        assert code == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        err.close()
