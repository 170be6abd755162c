"""Cached answers in Redis, shared by every gateway of a fleet; its errors are misses, never 5xx."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from proxy.cache.lru import Entry
from proxy.cache.store import decode, encode
from proxy.config.statesettings import StateSettings
from proxy.ops import logs

WARN_EVERY_S = 30.0
"""A Redis that fails is said once per this interval, not once per request."""
PAUSE_S = 1.0
"""After a failure the cache leaves Redis alone this long: a slow or dead Redis must not add
its deadline to every request (they are misses meanwhile)."""


def connect(settings: StateSettings) -> Redis:
    """Its own small client on [state]'s URL: bytes, not text (the state pool decodes), and the
    same deadline as the state's calls."""
    assert settings.url is not None
    return Redis.from_url(
        settings.url,
        max_connections=settings.pool_size,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        decode_responses=False,
        client_name="llm-gateway-cache",
    )


class RedisStore:
    """`SET key value PX ttl` per entry, capped in size by the caller; eviction beyond the
    memory Redis has is Redis's own `maxmemory-policy` (allkeys-lru suits a cache)."""

    def __init__(self, client: Redis, prefix: str, timeout_s: float) -> None:
        self.client = client
        self.prefix = prefix + "c:"
        self.timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._warned = -WARN_EVERY_S
        self._paused_until = 0.0
        self.errors = 0

    async def get(self, key: str) -> Entry | None:
        if self._paused_until and time.monotonic() < self._paused_until:
            return None
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = await self.client.get(self.prefix + key)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("get", exc)
            return None
        return decode(raw) if isinstance(raw, bytes) else None

    def put(self, key: str, entry: Entry, ttl_s: float) -> None:
        if self._paused_until and time.monotonic() < self._paused_until:
            return
        task = asyncio.get_running_loop().create_task(self._put(key, encode(entry), ttl_s))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _put(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await self.client.set(self.prefix + key, value, px=max(1, int(ttl_s * 1000)))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("put", exc)

    def _failed(self, op: str, exc: BaseException) -> None:
        self.errors += 1
        now = time.monotonic()
        self._paused_until = now + PAUSE_S
        if now - self._warned >= WARN_EVERY_S:
            self._warned = now
            logs.warning("cache_store_failed", op=op, error=type(exc).__name__, since=self.errors)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.timeout_s)
        await self.client.aclose()
