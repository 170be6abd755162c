"""Tests for proxy.server.sdnotify: exact datagrams on a real Unix socket, no-op and failure paths."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.server.sdnotify import Notifier, watchdog_interval_s


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def assert_nothing_queued(sock: socket.socket) -> None:
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


def test_exact_datagrams(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier(path)
    assert n.enabled
    n.ready()
    assert recv(sock) == "READY=1"
    n.ready("serving 3 routes")
    assert recv(sock) == "READY=1\nSTATUS=serving 3 routes"
    n.stopping()
    assert recv(sock) == "STOPPING=1"
    n.stopping("draining 4 streams")
    assert recv(sock) == "STOPPING=1\nSTATUS=draining 4 streams"
    n.status("reload failed: upstreams.a.base_url")
    assert recv(sock) == "STATUS=reload failed: upstreams.a.base_url"
    n.extend_timeout(15)
    assert recv(sock) == "EXTEND_TIMEOUT_USEC=15000000"
    n.extend_timeout(0.25)
    assert recv(sock) == "EXTEND_TIMEOUT_USEC=250000"
    n.watchdog()
    assert recv(sock) == "WATCHDOG=1"
    n.send("A=1", "B=2")
    assert recv(sock) == "A=1\nB=2"
    n.close()


def test_reloading_carries_monotonic_usec(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier(path)
    before = time.monotonic_ns() // 1000
    n.reloading()
    after = time.monotonic_ns() // 1000
    msg = recv(sock)
    m = re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=([0-9]+)", msg)
    assert m is not None, msg
    assert before <= int(m.group(1)) <= after
    n.close()


def test_status_is_one_line(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier(path)
    n.status("reload failed:\nline 2\r\nline 3")
    assert recv(sock) == "STATUS=reload failed: line 2 line 3"
    n.ready("a\nWATCHDOG=trigger")
    assert recv(sock) == "READY=1\nSTATUS=a WATCHDOG=trigger"
    # Raw fields cannot inject extra fields either.
    n.send("STATUS=x\nSTOPPING=1")
    assert recv(sock) == "STATUS=x STOPPING=1"
    n.close()


def test_abstract_socket() -> None:
    name = f"llm-gateway-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2.0)
    try:
        n = Notifier("@" + name)
        assert n.enabled
        n.ready("up")
        assert recv(sock) == "READY=1\nSTATUS=up"
        n.close()
    finally:
        sock.close()


def test_reads_notify_socket_env(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    assert n.enabled
    n.watchdog()
    assert recv(sock) == "WATCHDOG=1"
    n.close()


@pytest.mark.parametrize("value", [None, ""])
def test_noop_when_unset(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    n = Notifier()
    assert not n.enabled
    n.ready("x")
    n.reloading()
    n.stopping()
    n.status("x")
    n.extend_timeout(1)
    n.watchdog()
    n.send("A=1")
    n.close()


def test_explicit_empty_path_overrides_env(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier("")
    assert not n.enabled
    n.ready()
    assert_nothing_queued(sock)


def test_unsupported_address_is_noop() -> None:
    n = Notifier("vsock:2:1234")
    assert not n.enabled
    n.ready()


def test_swallows_errors_when_socket_vanished(tmp_path: Path) -> None:
    path = tmp_path / "gone.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    n = Notifier(str(path))
    sock.close()
    path.unlink()
    n.ready("still alive")
    n.reloading()
    n.stopping()
    n.watchdog()
    n.close()


def test_swallows_errors_when_path_never_existed(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "missing.sock"))
    assert n.enabled
    n.ready()
    n.close()


def test_full_receiver_does_not_block(tmp_path: Path) -> None:
    path = str(tmp_path / "full.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.bind(path)
    try:
        n = Notifier(path)
        started = time.monotonic()
        for _ in range(5000):
            n.status("x" * 200)
        assert time.monotonic() - started < 5.0
        n.close()
    finally:
        sock.close()


def test_close_makes_later_calls_noops(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier(path)
    n.close()
    assert not n.enabled
    n.ready()
    n.close()
    assert_nothing_queued(sock)


def test_extend_timeout_ignores_nonsense(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    n = Notifier(path)
    n.extend_timeout(float("nan"))
    n.extend_timeout(float("inf"))
    n.extend_timeout(-1)
    assert_nothing_queued(sock)
    n.close()


@pytest.mark.parametrize(
    ("env", "pid", "expected"),
    [
        ({}, 10, None),
        ({"WATCHDOG_USEC": "30000000"}, 10, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "10"}, 10, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "11"}, 10, None),
        ({"WATCHDOG_USEC": "0"}, 10, None),
        ({"WATCHDOG_USEC": "soon"}, 10, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, 10, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], pid: int, expected: float | None) -> None:
    assert watchdog_interval_s(env, pid) == expected
