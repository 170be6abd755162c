"""Minimal sd_notify client: READY, RELOADING, STOPPING, STATUS, WATCHDOG over $NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["Notifier", "watchdog_interval_s"]


def _one_line(text: str) -> str:
    # sd_notify fields are newline-separated: a newline in a value would forge a field.
    return " ".join(text.splitlines())


def watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """How often to send WATCHDOG=1 (half of $WATCHDOG_USEC, per sd_watchdog_enabled(3)).

    None when the watchdog is off or meant for another process ($WATCHDOG_PID).
    """
    usec = environ.get("WATCHDOG_USEC", "").strip()
    target = environ.get("WATCHDOG_PID", "").strip()
    if not usec.isdigit() or int(usec) == 0:
        return None
    if target and (not target.isdigit() or int(target) != pid):
        return None
    return int(usec) / 2_000_000


class Notifier:
    """Sends sd_notify datagrams; every call is a no-op when not run under systemd.

    Failures are swallowed on purpose: a gateway must keep serving even if the
    service manager's socket disappears.
    """

    __slots__ = ("_address", "_sock", "enabled")

    def __init__(self, socket_path: str | None = None) -> None:
        path = os.environ.get("NOTIFY_SOCKET") if socket_path is None else socket_path
        self._address: str | bytes | None = None
        self._sock: socket.socket | None = None
        if path and path.startswith("@"):
            # Abstract namespace: the leading "@" stands for a NUL byte.
            self._address = b"\0" + path[1:].encode()
        elif path and path.startswith("/"):
            self._address = path
        # Anything else (empty, unset, a vsock: address) is not ours to handle.
        if self._address is not None:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop on a full socket buffer; drop the message.
                sock.setblocking(False)
            except OSError:
                self._address = None
            else:
                self._sock = sock
        self.enabled: bool = self._sock is not None

    def send(self, *fields: str) -> None:
        """Send the fields as one datagram, e.g. send("READY=1", "STATUS=up")."""
        if self._sock is None or self._address is None or not fields:
            return
        payload = "\n".join(f.replace("\n", " ") for f in fields).encode()
        with contextlib.suppress(OSError):
            self._sock.sendto(payload, self._address)

    def ready(self, status: str | None = None) -> None:
        """Startup or reload finished."""
        self._send_with_status("READY=1", status)

    def reloading(self) -> None:
        """Reload started; READY=1 must follow."""
        # MONOTONIC_USEC lets systemd (>= 253) match this reload with its READY=1.
        self.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self, status: str | None = None) -> None:
        """Shutdown (drain) started."""
        self._send_with_status("STOPPING=1", status)

    def status(self, text: str) -> None:
        """Free-form one-line status shown by `systemctl status`."""
        self.send(f"STATUS={_one_line(text)}")

    def extend_timeout(self, seconds: float) -> None:
        """Ask for more time to start, reload or stop (a drain still making progress)."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> None:
        """Keep-alive ping for WatchdogSec=."""
        self.send("WATCHDOG=1")

    def close(self) -> None:
        """Release the socket; later calls are no-ops."""
        sock, self._sock = self._sock, None
        self.enabled = False
        if sock is not None:
            sock.close()

    def _send_with_status(self, field: str, status: str | None) -> None:
        if status is None:
            self.send(field)
        else:
            self.send(field, f"STATUS={_one_line(status)}")


async def keep_watchdog_fed(notifier: Notifier) -> None:
    """Ping from the event loop itself, so a blocked loop stops the pings and systemd restarts.

    Returns at once when systemd set no watchdog for this process.
    """
    interval_s = watchdog_interval_s(os.environ, os.getpid())
    while interval_s is not None:
        notifier.watchdog()
        await asyncio.sleep(interval_s)
