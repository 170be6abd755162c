"""Provider signals shared by every gateway on one Redis: publish ours, apply theirs (pub/sub)."""

from __future__ import annotations

import asyncio
import os
import time

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from proxy.config.statesettings import StateSettings
from proxy.ops import logs
from proxy.routing.signals import Signal, apply, identity
from proxy.routing.stats import StatsRegistry
from proxy.server.tasks import Tasks

QUEUE_MAX = 1024
"""Signals waiting to be published; beyond it (Redis away) they are dropped, not queued."""
RETRY_S = 0.5


class FleetSignals:
    """A 429 pause or an ejection seen here reaches the other gateways within milliseconds
    (Redis pub/sub on `PREFIX + "signals"`), so a rate-limited provider key is not tried by
    every replica in turn. Best effort by design: a signal lost while Redis is away only means
    that replica learns it from its own 429, as it would without a fleet."""

    def __init__(self, settings: StateSettings, registry: StatsRegistry) -> None:
        assert settings.url is not None
        self.channel = f"{settings.prefix}signals"
        self.registry = registry
        self.origin = os.urandom(6).hex()
        # Its own client: a subscribed connection blocks on reads with no deadline.
        self.client = Redis.from_url(
            settings.url,
            socket_connect_timeout=settings.timeout_s,
            socket_timeout=None,
            decode_responses=False,
            client_name="llm-gateway-signals",
        )
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_MAX)
        self.subscribed = asyncio.Event()
        self.sent = 0
        self.applied = 0

    def start(self, tasks: Tasks) -> None:
        self.registry.sink.emit = self._emit
        tasks.spawn(self._publish(), name="fleet-publish")
        tasks.spawn(self._listen(), name="fleet-listen")

    def _emit(self, fingerprint: str, signal: Signal, seconds: float) -> None:
        msg = {"o": self.origin, "u": identity(fingerprint), "k": signal.value, "s": seconds}
        if not self.queue.full():
            self.queue.put_nowait(orjson.dumps(msg))

    async def _publish(self) -> None:
        while True:
            data = await self.queue.get()
            try:
                await self.client.publish(self.channel, data)
                self.sent += 1
            except (RedisError, OSError) as exc:
                logs.warning("fleet_signal_lost", error=type(exc).__name__)

    async def _listen(self) -> None:
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                async for msg in pubsub.listen():
                    if msg.get("type") == "message":
                        self._received(msg["data"])
            except (RedisError, OSError) as exc:
                logs.warning("fleet_signals_disconnected", error=type(exc).__name__)
            finally:
                self.subscribed.clear()
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(RETRY_S)

    def _received(self, data: bytes) -> None:
        try:
            msg = orjson.loads(data)
            origin, who, kind, seconds = msg["o"], msg["u"], Signal(msg["k"]), float(msg["s"])
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            return
        if origin == self.origin or not 0 < seconds < 86400:
            return
        now = time.monotonic()
        for st in self.registry.live():
            if identity(st.fingerprint) == who and apply(st, kind, seconds, now):
                self.applied += 1
                logs.event("fleet_signal", upstream=st.name, signal=kind.value, for_s=seconds)

    async def close(self) -> None:
        self.registry.sink.emit = None
        await self.client.aclose()
