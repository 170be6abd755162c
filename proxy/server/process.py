"""Run one gateway process: bind, announce readiness, reload on SIGHUP, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import ctypes
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp import http_parser, web

from proxy.config.compiler import compile_text
from proxy.config.values import Config, ConfigError
from proxy.governance.pricetable import shipped
from proxy.ops import logs
from proxy.ops.looplag import LoopLag
from proxy.ops.metrics import Metrics
from proxy.ops.recent import RecentTraces
from proxy.ops.tracing import Tracer, TracingUnavailable
from proxy.routing.balancer import Balancer
from proxy.routing.stats import StatsRegistry
from proxy.server.admin import AdminState, build_admin_app
from proxy.server.app import Dispatch
from proxy.server.caching import open_cache
from proxy.server.edge import Edge, EdgeRunner
from proxy.server.fleet import FleetSignals
from proxy.server.governance import load_keys, open_governor, warn_if_open
from proxy.server.healthchecks import HealthChecks
from proxy.server.keyreload import KeyReloader
from proxy.server.reload import Reloader
from proxy.server.runtime import FINAL_GRACE_S, ConfigStore, Drain, Gateway
from proxy.server.sdnotify import Notifier, keep_watchdog_fed
from proxy.server.startup import listen_error
from proxy.server.supervisor import LISTEN_ENV, WORKER_ENV, Supervisor
from proxy.server.tasks import Tasks
from proxy.state.pins import RedisPins
from proxy.state.shared import SharedState
from proxy.transport.forward import HTTPSender, new_session
from proxy.transport.pool import Pool

PR_SET_PDEATHSIG = 1


Compile = Callable[[str], Config]
"""Text of gateway.toml to a snapshot: `compile_text`, or the demo's with its port overrides."""


def load(path: Path, compiler: Compile = compile_text) -> tuple[Config, str]:
    """Read and compile the config at start; raise ConfigError naming every problem."""
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConfigError(
            [f"--config: cannot read {path}: {why}; pass the right path or fix its permissions"]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([f"--config: {path} is not UTF-8 text"]) from None
    return compiler(text), text


class GatewayServer:
    """One process's lifecycle, from bound socket to a drained exit."""

    def __init__(
        self,
        path: Path,
        config: Config,
        text: str,
        sock: socket.socket | None = None,
        compiler: Compile = compile_text,
        on_ready: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self.notifier = Notifier()
        self.tasks = Tasks(
            on_error=lambda name, exc: logs.error("task_failed", task=name, error=repr(exc))
        )
        self.store = ConfigStore(config)
        self.balancer = Balancer(StatsRegistry(), random.Random(), shipped())
        self.balancer.adopt(config, time.monotonic())
        self.reloader = Reloader(path, self.store, self.balancer, self.notifier, compiler)
        self.on_ready = on_ready
        self.reloader.remember(text)
        self.drain = Drain()
        self.sock = sock
        self.stop_event = asyncio.Event()
        self.runner: EdgeRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.pool: Pool | None = None
        """Keep-alive connections to upstreams for proxied requests."""
        self.health: HealthChecks | None = None
        """Active health checks (`health = {...}` on upstreams), once started."""
        self.address = ""
        self.governor, self.keys_path = open_governor(path, config)
        self.governor.registry = self.balancer.registry
        if isinstance(self.governor.state, SharedState):  # affinity pins shared over Redis too
            st = config.state
            remote = self.governor.state.remote
            self.balancer.shared_pins = RedisPins(remote.client, remote.prefix, st.timeout_s)
        self.key_reloader = KeyReloader(self.keys_path, self.governor)
        self.metrics = Metrics() if config.admin is not None else None
        self.lag = LoopLag()
        self.recent = RecentTraces() if self.metrics is not None else None
        self.tracer: Tracer | None = None
        if config.tracing is not None:
            try:
                self.tracer = Tracer(config.tracing)
            except TracingUnavailable as exc:
                raise ConfigError([f"tracing: {exc}"]) from None
        self.cache = open_cache(config)
        self.admin_runner: web.AppRunner | None = None
        self.admin_address = ""
        self.fleet = (
            None
            if config.state.backend != "redis"
            else FleetSignals(config.state, self.balancer.registry)
        )

    async def start(self) -> str:
        if http_parser.HttpRequestParser is http_parser.HttpRequestParserPy:
            # Most of aiohttp's request-smuggling advisories were in the pure-Python parser.
            logs.warning("pure_python_http_parser", hint="unset AIOHTTP_NO_EXTENSIONS")
        server = self.store.current.server
        self.session = new_session()
        self.pool = Pool(keepalive_s=60.0)
        gw = Gateway(
            store=self.store,
            balancer=self.balancer,
            send=HTTPSender(self.pool),
            drain=self.drain,
            governor=self.governor,
            metrics=self.metrics,
            recent=self.recent,
            tracer=self.tracer,
            cache=self.cache,
        )
        await self.governor.restore()
        self.health = HealthChecks(self.store, self.balancer.registry, self.session)
        self.tasks.spawn(self.health.run(), name="health-checks")  # idle without `health`
        if self.fleet is not None:
            self.fleet.start(self.tasks)
        self.edge = Edge(self.store)
        self.runner = EdgeRunner(
            Dispatch(gw),
            self.edge,
            shutdown_timeout=FINAL_GRACE_S,
            handler_cancellation=True,
            keepalive_timeout=server.keepalive_timeout_s,
            access_log=None,
            # Bodies are read by the handler against the live snapshot's limit, not aiohttp's.
            max_field_size=16384,
            max_headers=server.max_headers,
        )
        await self.runner.setup()
        site: web.BaseSite
        worker_listen = os.environ.get(LISTEN_ENV)
        if self.sock is not None:
            site = web.SockSite(self.runner, self.sock)
        elif worker_listen:
            # One of several workers: the same port, SO_REUSEPORT spreads connections.
            host, _, port = worker_listen.rpartition(":")
            site = web.TCPSite(
                self.runner, host.strip("[]"), int(port), backlog=1024, reuse_port=True
            )
        else:
            site = web.TCPSite(self.runner, server.host, server.port, backlog=1024)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.address = f"http://{shown}:{port}"
        await self._start_admin()
        return self.address

    async def _start_admin(self) -> None:
        """The admin listener, on its own address (one process only: see the README)."""
        admin = self.store.current.admin
        if admin is None or self.metrics is None or os.environ.get(WORKER_ENV, "0") != "0":
            return
        state = AdminState(
            self.store,
            self.balancer,
            self.reloader,
            self.metrics,
            self.lag,
            self.recent,
            self.edge,
            self.health,
        )
        self.admin_runner = web.AppRunner(build_admin_app(state), access_log=None)
        await self.admin_runner.setup()
        await web.TCPSite(self.admin_runner, admin.host, admin.port).start()
        host, port = self.admin_runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.admin_address = f"http://{shown}:{port}"

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        loop.add_signal_handler(signal.SIGINT, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self.sighup)

    def sighup(self) -> None:
        self.tasks.spawn(self.reloader.reload("SIGHUP"), name="reload-sighup")
        self.tasks.spawn(self.key_reloader.reload("SIGHUP"), name="keys-reload-sighup")

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT, then drain. Returns the exit code."""
        try:
            address = await self.start()
        except OSError as exc:
            server, admin = self.store.current.server, self.store.current.admin
            if self.address and admin is not None:
                error = listen_error(exc, admin.host, admin.port)
                error = error.replace("server.listen", "admin.listen").replace(
                    "[server] listen (demo: --port N)", "[admin] listen"
                )
            else:
                error = listen_error(exc, server.host, server.port)
            logs.error("startup_failed", error=error)
            await self._close()
            return 1
        self.install_signals()
        if self.store.current.server.watch:
            self.tasks.spawn(self.reloader.watch(), name="config-watcher")
            self.tasks.spawn(self.key_reloader.watch(), name="keys-watcher")
        snap = self.store.current
        warn_if_open(self.governor, self.keys_path)
        logs.event(
            "ready",
            address=address,
            config=str(self.path),
            routes=len(snap.routes),
            upstreams=len(snap.upstreams),
            **({"admin": self.admin_address} if self.admin_address else {}),
        )
        self.notifier.ready(status=f"listening on {address}")
        if self.on_ready is not None:
            self.on_ready(address)
        self.tasks.spawn(keep_watchdog_fed(self.notifier), name="watchdog")
        if self.metrics is not None:
            self.tasks.spawn(self.lag.run(), name="loop-lag")
            self.tasks.spawn(self.metrics.flush_every(), name="metrics-flush")
        await self.stop_event.wait()
        await self.shutdown()
        return 0

    async def _close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.admin_runner is not None:
            await self.admin_runner.cleanup()
            self.admin_runner = None
        await self.governor.close()  # every request has settled: flush the ledger
        await self.cache.close()
        if self.metrics is not None:
            self.metrics.flush()  # a worker's last increments reach the shared files
        if self.tracer is not None:
            await asyncio.to_thread(self.tracer.shutdown)  # the last spans are exported
        if self.fleet is not None:
            await self.fleet.close()
        if self.session is not None:
            await self.session.close()
            self.session = None
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        logs.flush()

    async def shutdown(self) -> None:
        """Stop accepting, let in-flight work finish up to the drain timeout, end the rest."""
        if self.runner is None or self.drain.draining:
            return
        timeout_s = self.store.current.server.drain_timeout_s
        self.drain.draining = True
        self.notifier.stopping(status=f"draining {self.drain.inflight} requests")
        logs.event("draining", inflight=self.drain.inflight, timeout_s=timeout_s)
        for site in list(self.runner.sites):
            await site.stop()
        if self.runner.server is not None:
            self.runner.server.pre_shutdown()  # close idle keep-alive connections now
        # Only forwarded requests are drained: one still sending its body is closed now.
        unreceived = self.drain.stop_receiving()
        if unreceived:
            logs.event("unreceived_closed", requests=unreceived)
        drained = await self.drain.wait_idle(timeout_s)
        if not drained:
            ended = self.drain.end_streams()
            logs.warning("drain_timeout", streams_ended=ended, inflight=self.drain.inflight)
            await self.drain.wait_idle(FINAL_GRACE_S)
        await self.tasks.cancel_all(timeout_s=2.0)
        await self._close()
        self.notifier.close()
        logs.event("stopped", drained=drained)
        logs.flush()


async def serve(
    path: Path,
    sock: socket.socket | None = None,
    compiler: Compile = compile_text,
    on_ready: Callable[[str], None] | None = None,
) -> int:
    """Serve in this process, or supervise `[server] workers` processes that each do."""
    try:
        config, text = load(path, compiler)
    except ConfigError as exc:
        for line in exc.errors:
            logs.error("config_invalid", error=line)
        return 1
    worker = os.environ.get(WORKER_ENV)
    logs.configure(config.server.log_level, config.secrets, worker=worker)
    if worker is None and config.server.workers > 1 and sock is None:
        try:
            load_keys(path, config)  # a broken keys file must not become a worker crash loop
        except ConfigError as exc:
            for line in exc.errors:
                logs.error("config_invalid", error=line)
            return 1
        return await Supervisor(path, config).run()
    if worker is not None:
        die_with_parent()
    try:
        server = GatewayServer(path, config, text, sock, compiler, on_ready)
    except ConfigError as exc:
        for line in exc.errors:
            logs.error("config_invalid", error=line)
        return 1
    return await server.run()


def die_with_parent() -> None:
    """A worker must not outlive its supervisor (even one killed with SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
