"""Affinity pins in Redis, so every gateway instance sends a conversation to the same upstream."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from proxy.ops import logs

FAILURES = (RedisError, OSError, TimeoutError)


class RedisPins:
    """`SharedPins` over Redis: `GET` on a local miss (within the state timeout), `SET PX` and
    `DEL` in background tasks. An unreachable Redis only costs affinity, never a request."""

    def __init__(self, client: Redis, prefix: str, timeout_s: float) -> None:
        self.client = client
        self.prefix = prefix + "pin:"
        self.timeout_s = timeout_s
        self._tasks: set[asyncio.Task[None]] = set()
        self._failing = False

    async def fetch(self, key: str) -> str | None:
        try:
            async with asyncio.timeout(self.timeout_s):
                raw = await self.client.get(self.prefix + key)
        except FAILURES as exc:
            self._failed(exc)
            return None
        self._failing = False
        if isinstance(raw, bytes):
            return raw.decode()
        return raw if isinstance(raw, str) else None

    def push(self, key: str, upstream: str, ttl_s: float) -> None:
        ms = max(int(ttl_s * 1000), 1)
        self._spawn(self.client.set(self.prefix + key, upstream, px=ms))

    def forget(self, key: str) -> None:
        self._spawn(self.client.delete(self.prefix + key))

    async def drain(self) -> None:
        """Wait for the writes in flight (tests; shutdown)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, op: Awaitable[Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._run(op), name="pin-write")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, op: Awaitable[Any]) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await op
        except FAILURES as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            logs.warning("pins_unreachable", error=type(exc).__name__)
