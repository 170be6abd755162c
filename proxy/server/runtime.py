"""Process-wide state the handlers reach: snapshot store, balancer, sender, drain tracker."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import web

from proxy.config.values import Config
from proxy.core.failures import FailureKind
from proxy.ops.metrics import Metrics
from proxy.ops.recent import RecentTraces
from proxy.ops.tracing import Tracer
from proxy.routing.balancer import Balancer
from proxy.routing.send import Send
from proxy.server.caching import ResponseCache
from proxy.server.governor import Governor
from proxy.server.inflightbodies import InflightBodies
from proxy.transport.relay import StreamRelay

FINAL_GRACE_S = 5.0
"""After the drain timeout, how long streams get to write their shutdown event and end."""
RECEIVE_GRACE_S = 1.0
"""While draining, how long a request that starts arriving may take to deliver its body."""


class ConfigStore:
    """Holds the active snapshot; a request reads `current` once and keeps that object."""

    __slots__ = ("_current", "generation")

    def __init__(self, first: Config) -> None:
        self._current = first
        self.generation = 1

    @property
    def current(self) -> Config:
        return self._current

    def swap(self, new: Config) -> Config:
        """Install `new` and return the old snapshot. No await: atomic on the event loop."""
        old, self._current = self._current, new
        self.generation += 1
        return old


class Drain:
    """Counts requests in flight and the streams being relayed, so SIGTERM can drain them."""

    __slots__ = ("_idle", "cut", "draining", "inflight", "receiving", "streams", "waiting")

    def __init__(self) -> None:
        self.inflight = 0
        self.streams: set[StreamRelay] = set()
        self.waiting: set[asyncio.Task[object]] = set()
        """Requests still before their commit point (waiting on an upstream)."""
        self.cut: set[asyncio.Task[object]] = set()
        """Of those, the ones the drain deadline cancelled: they answer 503, not 499."""
        self.receiving: set[asyncio.Task[object]] = set()
        """Requests whose body has not fully arrived: nothing was forwarded, nothing to drain."""
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    def start_receiving(self) -> asyncio.Task[object] | None:
        """The current request is reading its body; while draining it gets RECEIVE_GRACE_S."""
        task: asyncio.Task[object] | None = asyncio.current_task()
        if task is not None:
            self.receiving.add(task)
            if self.draining:
                asyncio.get_running_loop().call_later(RECEIVE_GRACE_S, self._stop_receiving, task)
        return task

    def done_receiving(self, task: asyncio.Task[object] | None) -> None:
        if task is not None:
            self.receiving.discard(task)

    def stop_receiving(self) -> int:
        """Drain starts: close requests that have not delivered their body (a stalled client
        must not hold the shutdown); returns how many."""
        tasks = list(self.receiving)
        for task in tasks:
            self._stop_receiving(task)
        return len(tasks)

    def _stop_receiving(self, task: asyncio.Task[object]) -> None:
        if task in self.receiving:
            self.receiving.discard(task)
            task.cancel()

    async def wait_idle(self, timeout_s: float) -> bool:
        """True if every request finished within the timeout."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def end_streams(self) -> int:
        """End what is left at the deadline: streams get a shutdown error event, requests
        still waiting on an upstream get a 503. Returns how many were ended."""
        for relay in list(self.streams):
            relay.abort(FailureKind.SHUTDOWN)
        for task in self.waiting:
            self.cut.add(task)
            task.cancel()
        return len(self.streams) + len(self.waiting)


@dataclass(slots=True)
class Gateway:
    """Everything a request needs besides the request itself."""

    store: ConfigStore
    balancer: Balancer
    send: Send
    """The transport seam: how attempts reach upstreams."""
    drain: Drain
    governor: Governor = field(default_factory=Governor)
    """Keys, limits and budgets, spend and the ledger."""
    bodies: InflightBodies = field(default_factory=InflightBodies)
    """Request-body bytes held by all requests in flight, bounded by the snapshot."""
    metrics: Metrics | None = None
    """Prometheus series, when an admin listener is configured."""
    recent: RecentTraces | None = None
    """Routing traces of the last requests, for the admin API."""
    tracer: Tracer | None = None
    """OpenTelemetry spans, when [tracing] is configured."""
    cache: ResponseCache | None = None
    """The response cache's store and flights (used only by routes with `cache`)."""
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _id_prefix: str = field(default_factory=lambda: os.urandom(6).hex())

    def new_request_id(self) -> str:
        """Unique across processes and restarts (random prefix), cheaper than uuid4."""
        return f"{self._id_prefix}{next(self._ids):08x}"


GATEWAY = web.AppKey("gateway", Gateway)
