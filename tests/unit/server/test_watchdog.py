"""The watchdog task pings systemd from the event loop at half the configured interval."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from proxy.server.sdnotify import Notifier, keep_watchdog_fed


async def test_pings_at_half_the_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # 40 ms -> a ping every 20 ms
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    task = asyncio.ensure_future(keep_watchdog_fed(Notifier(path)))
    await asyncio.sleep(0.11)
    task.cancel()
    pings = []
    while True:
        try:
            pings.append(sock.recv(64))
        except BlockingIOError:
            break
    sock.close()
    assert set(pings) == {b"WATCHDOG=1"}
    assert 4 <= len(pings) <= 7


async def test_returns_when_no_watchdog_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    async with asyncio.timeout(1):
        await keep_watchdog_fed(Notifier(""))
