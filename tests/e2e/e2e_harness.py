"""E2E harness: gateway subprocesses with captured logs, fake providers, config files, waits.

Test modules import helpers from here and load the fixtures of e2e_fixtures.py with
`pytest_plugins = ("e2e.e2e_fixtures",)`. There is deliberately no tests/e2e/conftest.py: the
integration tests import `conftest` by name, and a second conftest module would shadow it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import orjson
import pytest
import tomli_w

from proxy.fake.server import FakeProvider

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "gateway"
GATEWAY_CMD: tuple[str, ...] = (
    (str(_SCRIPT),) if _SCRIPT.exists() else (sys.executable, "-m", "proxy")
)
"""The installed console script when there is one (what an operator runs)."""

READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


@dataclass(slots=True)
class LogLine:
    """One stdout line of the gateway with its arrival time (time.monotonic)."""

    at: float
    raw: str
    obj: dict[str, object] | None

    @property
    def event(self) -> str | None:
        value = None if self.obj is None else self.obj.get("event")
        return value if isinstance(value, str) else None


@dataclass
class GatewayProcess:
    """A gateway subprocess whose stdout and stderr are drained by reader threads."""

    proc: subprocess.Popen[bytes]
    lines: list[LogLine] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    address: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for stream, sink in ((self.proc.stdout, self._on_stdout), (self.proc.stderr, self._on_err)):
            assert stream is not None
            t = threading.Thread(target=_pump, args=(stream, sink), daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _on_stdout(self, raw: str) -> None:
        obj: dict[str, object] | None = None
        with contextlib.suppress(orjson.JSONDecodeError):
            parsed = orjson.loads(raw)
            obj = parsed if isinstance(parsed, dict) else None
        with self._lock:
            self.lines.append(LogLine(time.monotonic(), raw, obj))

    def _on_err(self, raw: str) -> None:
        with self._lock:
            self.stderr.append(raw)

    def snapshot(self) -> list[LogLine]:
        with self._lock:
            return list(self.lines)

    def events(self, name: str, start: int = 0) -> list[dict[str, object]]:
        """Parsed log lines with this event name, from line index `start` on."""
        return [ln.obj for ln in self.snapshot()[start:] if ln.event == name and ln.obj]

    def event_lines(self, name: str, start: int = 0) -> list[LogLine]:
        """Like `events`, with each line's arrival time."""
        return [ln for ln in self.snapshot()[start:] if ln.event == name]

    def mark(self) -> int:
        """The current line count: pass it as `start` to look only at later lines."""
        with self._lock:
            return len(self.lines)

    def output(self) -> str:
        """Everything the process printed so far, for assertion messages."""
        with self._lock:
            out = [ln.raw for ln in self.lines[-60:]]
            err = self.stderr[-30:]
        return "stdout:\n" + "\n".join(out) + "\nstderr:\n" + "\n".join(err)

    async def wait_event(
        self,
        name: str,
        *,
        start: int = 0,
        timeout_s: float = 5.0,
        where: Callable[[dict[str, object]], bool] | None = None,
    ) -> dict[str, object]:
        """The first matching event after line `start`; fails the test on timeout or exit."""
        deadline = time.monotonic() + timeout_s
        while True:
            for obj in self.events(name, start):
                if where is None or where(obj):
                    return obj
            if self.proc.poll() is not None:
                await asyncio.sleep(0.1)  # let the reader threads catch the last lines
                for obj in self.events(name, start):
                    if where is None or where(obj):
                        return obj
                pytest.fail(
                    f"gateway exited ({self.proc.returncode}) before {name!r}\n{self.output()}"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no {name!r} log event within {timeout_s}s\n{self.output()}")
            await asyncio.sleep(0.02)

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> str:
        ready = await self.wait_event("ready", timeout_s=timeout_s)
        address = ready.get("address")
        assert isinstance(address, str), ready
        assert address.startswith("http://127.0.0.1:"), address
        self.address = address
        return address

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    async def wait_exit(self, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while (code := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                pytest.fail(f"gateway pid {self.pid} still running after {timeout_s}s")
            await asyncio.sleep(0.02)
        for t in self._threads:
            t.join(timeout=2.0)
        return code

    def stop(self) -> None:
        """Terminate this process (by its PID), kill it if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
        for t in self._threads:
            t.join(timeout=2.0)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def _pump(stream: IO[bytes], sink: Callable[[str], None]) -> None:
    for raw in iter(stream.readline, b""):
        sink(raw.decode("utf-8", "replace").rstrip("\r\n"))


GatewayStarter = Callable[..., GatewayProcess]
"""spawn_gateway(config_path, *, command="serve", env=None, drop_env=(), args=()) -> GatewayProcess"""

FakeStarter = Callable[..., Awaitable[FakeProvider]]
"""fake_upstreams(name, default_behaviour=None) -> a started FakeProvider"""


def child_env(extra: Mapping[str, str] | None = None, drop: Sequence[str] = ()) -> dict[str, str]:
    """The environment of a gateway subprocess: no proxies, no inherited NOTIFY_SOCKET."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.pop("NOTIFY_SOCKET", None)
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    for name in drop:
        env.pop(name, None)
    env.update(extra or {})
    return env


# --- config files ---------------------------------------------------------------------------


def server_section(**overrides: object) -> dict[str, object]:
    server: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "drain_timeout_s": 2,
        "watch": False,
        "log_level": "info",
    }
    server.update(overrides)
    return server


def upstream_entry(fake: FakeProvider, model: str, **extra: object) -> dict[str, object]:
    return {"provider": "openai", "base_url": fake.base_url, "model": model, **extra}


def config_dict(
    upstreams: Mapping[str, object],
    routes: Mapping[str, object],
    **server: object,
) -> dict[str, object]:
    return {
        "server": server_section(**server),
        "defaults": {"connect_timeout_s": 2, "ttfb_timeout_s": 10, "idle_timeout_s": 20},
        "upstreams": dict(upstreams),
        "routes": dict(routes),
    }


def replace_file(path: Path, text: str) -> None:
    """Save like an editor does: write a temp file beside it, then rename it over the file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, "utf-8")
    os.replace(tmp, path)


def write_config(path: Path, config: Mapping[str, object]) -> None:
    replace_file(path, tomli_w.dumps(dict(config)))


async def wait_until(what: str, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll `predicate` until it holds; fail the test after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


def free_port() -> int:
    """A port nothing listens on right now (bind 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def chat_body(model: str, *, stream: bool, **extra: object) -> bytes:
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "stream": stream,
        **extra,
    }
    return orjson.dumps(body)


async def connect_refused(port: int, timeout_s: float = 0.5) -> bool:
    """True when a TCP connect to 127.0.0.1:port is refused (nothing listens)."""
    try:
        async with asyncio.timeout(timeout_s):
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    except TimeoutError:
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False


@dataclass(slots=True)
class RawResponse:
    """An HTTP/1.1 response read byte by byte from a socket until the server closed it."""

    status: int
    headers: dict[str, str]
    body: bytes
    """The payload, de-chunked when chunked."""
    clean_end: bool
    """Chunked: the terminating zero-size chunk arrived. Otherwise: Content-Length honoured."""
    ended_at: float


async def raw_request(
    port: int, method: str, path: str, body: bytes = b"", *, timeout_s: float = 15.0
) -> RawResponse:
    """One request on a fresh connection (Connection: close), read to EOF, framing checked."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        async with asyncio.timeout(timeout_s):
            raw = await reader.read()
        return parse_response(raw, time.monotonic())
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def parse_response(raw: bytes, ended_at: float) -> RawResponse:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, f"no complete header block in {raw[:300]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() != "chunked":
        length = int(headers.get("content-length", len(rest)))
        return RawResponse(status, headers, rest[:length], len(rest) == length, ended_at)
    body, clean = dechunk(rest)
    return RawResponse(status, headers, body, clean, ended_at)


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """The payload of a chunked body, and whether it ended with a proper zero-size chunk."""
    out: list[bytes] = []
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return b"".join(out), False
        size = int(data[pos:eol].split(b";")[0], 16)
        start = eol + 2
        if size == 0:
            return b"".join(out), data[start : start + 2] == b"\r\n"
        chunk = data[start : start + size]
        if len(chunk) < size or data[start + size : start + size + 2] != b"\r\n":
            out.append(chunk)
            return b"".join(out), False
        out.append(chunk)
        pos = start + size + 2


def sse_data(body: bytes) -> list[bytes]:
    """The `data:` payloads of an SSE body, in order."""
    events: list[bytes] = []
    for block in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = [ln[5:].strip() for ln in block.split(b"\n") if ln.startswith(b"data:")]
        if data:
            events.append(b"\n".join(data))
    return events


async def next_state_message(sock: socket.socket, timeout_s: float = 10.0) -> dict[str, str]:
    """The next sd_notify datagram that changes state (READY, RELOADING, STOPPING...), as fields.

    Datagrams carrying only STATUS, EXTEND_TIMEOUT_USEC or WATCHDOG are skipped.
    """
    loop = asyncio.get_running_loop()
    while True:
        async with asyncio.timeout(timeout_s):
            data = await loop.sock_recv(sock, 4096)
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
        if set(fields) - {"STATUS", "EXTEND_TIMEOUT_USEC", "WATCHDOG"}:
            return fields
