"""Run N worker processes on one SO_REUSEPORT port under the one parent process systemd sees."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from proxy.config.compiler import compile_text
from proxy.config.values import Config, ConfigError
from proxy.ops import logs
from proxy.ops.metrics import MULTIPROCESS_ENV
from proxy.server.runtime import FINAL_GRACE_S
from proxy.server.sdnotify import Notifier, keep_watchdog_fed
from proxy.server.startup import listen_error
from proxy.server.tasks import Tasks

WORKER_ENV = "GATEWAY_WORKER"
"""Set in a worker's environment: its index. A worker serves alone, whatever `workers` says."""
LISTEN_ENV = "GATEWAY_WORKER_LISTEN"
"""HOST:PORT the worker binds with SO_REUSEPORT (the parent resolved port 0 already)."""
START_TIMEOUT_S = 30.0
RELOAD_TIMEOUT_S = 15.0
RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass(slots=True)
class Worker:
    index: int
    process: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    status: str = ""
    restarts: int = 0
    started_at: float = 0.0


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) with SO_REUSEPORT so port 0 resolves once and every worker shares it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


class Supervisor:
    """Parent of the workers: forwards SIGHUP and SIGTERM, restarts the dead, speaks to systemd."""

    def __init__(self, path: Path, config: Config) -> None:
        self.path = path
        self.config = config
        self.systemd = Notifier()
        self.tasks = Tasks(on_error=lambda n, e: logs.error("task_failed", task=n, error=repr(e)))
        self.workers = [Worker(i) for i in range(config.server.workers)]
        self.stopping = False
        self.stop_event = asyncio.Event()
        self._by_pid: dict[int, Worker] = {}
        self._listen = ""
        self._notify_path = ""
        self._metrics_dir = ""
        """Where the workers' metric files are summed (when [admin] is configured)."""
        self._notify: socket.socket | None = None

    async def run(self) -> int:
        server = self.config.server
        try:
            placeholder = reserve_port(server.host, server.port)
        except OSError as exc:
            logs.error("startup_failed", error=listen_error(exc, server.host, server.port))
            return 1
        host, port = placeholder.getsockname()[:2]
        self._listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        tmp = tempfile.mkdtemp(prefix="llm-gateway-")
        self._notify_path = os.path.join(tmp, "notify.sock")
        if self.config.admin is not None:
            self._metrics_dir = os.path.join(tmp, "metrics")
            os.mkdir(self._metrics_dir, 0o700)
        self._open_notify_socket()
        try:
            for w in self.workers:
                await self._spawn(w)
            if not await self._all_ready(START_TIMEOUT_S):
                logs.error("workers_not_ready", timeout_s=START_TIMEOUT_S)
                await self._stop_workers(5.0)
                return 1
            self._install_signals()
            address = f"http://{self._listen}"
            logs.event("ready", address=address, workers=len(self.workers), config=str(self.path))
            self.systemd.ready(status=f"listening on {address} with {len(self.workers)} workers")
            self.tasks.spawn(keep_watchdog_fed(self.systemd), name="watchdog")
            await self.stop_event.wait()
            return await self._shutdown()
        finally:
            placeholder.close()
            if self._notify is not None:
                self._notify.close()
            shutil.rmtree(tmp, ignore_errors=True)

    # --- workers -----------------------------------------------------------------------------

    async def _spawn(self, w: Worker) -> None:
        env = dict(os.environ)
        env[WORKER_ENV] = str(w.index)
        env[LISTEN_ENV] = self._listen
        env["NOTIFY_SOCKET"] = self._notify_path
        env.pop(MULTIPROCESS_ENV, None)
        if self._metrics_dir:
            env[MULTIPROCESS_ENV] = self._metrics_dir
        w.ready.clear()
        w.started_at = time.monotonic()
        w.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "serve", "--config", str(self.path), env=env
        )
        self._by_pid[w.process.pid] = w
        logs.event("worker_started", worker=w.index, pid=w.process.pid)
        self.tasks.spawn(self._watch(w, w.process), name=f"worker-{w.index}")

    async def _watch(self, w: Worker, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self._by_pid.pop(proc.pid, None)
        if self.stopping:
            return
        delay = RESTART_BACKOFF_S[min(w.restarts, len(RESTART_BACKOFF_S) - 1)]
        if time.monotonic() - w.started_at > 60:
            w.restarts = 0  # it ran a while: a fresh crash, not a crash loop
        w.restarts += 1
        logs.error("worker_died", worker=w.index, pid=proc.pid, code=code, restart_in_s=delay)
        await asyncio.sleep(delay)
        if not self.stopping:
            await self._spawn(w)

    async def _all_ready(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                for w in self.workers:
                    await w.ready.wait()
        except TimeoutError:
            return False
        return True

    def _signal_all(self, sig: signal.Signals) -> None:
        for w in self.workers:
            if w.process is not None and w.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    w.process.send_signal(sig)

    async def _stop_workers(self, timeout_s: float) -> None:
        self.stopping = True
        self._signal_all(signal.SIGTERM)
        procs = [w.process for w in self.workers if w.process is not None]
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(p.wait() for p in procs))
        except TimeoutError:
            logs.error("workers_killed", after_s=timeout_s)
            self._signal_all(signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in procs))

    # --- signals -----------------------------------------------------------------------------

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        self.tasks.spawn(self._reload(), name="reload")

    async def _reload(self) -> None:
        """Forward SIGHUP; systemd hears READY=1 once every worker has reported back."""
        self.systemd.reloading()
        for w in self.workers:
            w.ready.clear()
        self._signal_all(signal.SIGHUP)
        with contextlib.suppress(OSError, UnicodeDecodeError, ConfigError):
            text = await asyncio.to_thread(self.path.read_text, "utf-8")
            self.config = compile_text(text)  # the drain timeout may have changed
        ok = await self._all_ready(RELOAD_TIMEOUT_S)
        failed = [w.status for w in self.workers if "failed" in w.status]
        status = failed[0] if failed else f"reloaded; {len(self.workers)} workers"
        if not ok:
            status = "reload: not every worker answered in time"
        self.systemd.ready(status=status)

    async def _shutdown(self) -> int:
        drain_s = self.config.server.drain_timeout_s
        self.systemd.stopping(status=f"draining {len(self.workers)} workers")
        logs.event("draining", workers=len(self.workers), timeout_s=drain_s)
        await self._stop_workers(drain_s + FINAL_GRACE_S + 5.0)
        await self.tasks.cancel_all(timeout_s=1.0)
        self.systemd.close()
        logs.event("stopped")
        logs.flush()
        return 0

    # --- the workers' sd_notify messages -----------------------------------------------------

    def _open_notify_socket(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        sock.bind(self._notify_path)
        sock.setblocking(False)
        self._notify = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._on_notify)

    def _on_notify(self) -> None:
        assert self._notify is not None
        while True:
            try:
                data, anc, _flags, _addr = self._notify.recvmsg(4096, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                return
            pid = _sender_pid(anc)
            w = self._by_pid.get(pid) if pid is not None else None
            if w is not None:
                self._apply(w, data.decode("utf-8", "replace"))

    def _apply(self, w: Worker, message: str) -> None:
        fields = dict(line.split("=", 1) for line in message.splitlines() if "=" in line)
        if "STATUS" in fields:
            w.status = fields["STATUS"]
        if fields.get("READY") == "1":
            w.ready.set()


def _sender_pid(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= 12:
            pid, _uid, _gid = struct.unpack("iII", payload[:12])
            return int(pid)
    return None
