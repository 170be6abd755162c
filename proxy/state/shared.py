"""A Redis-backed `LimitState` that survives Redis going away: closed (503) or open (count here)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping

from redis.exceptions import RedisError

from proxy.core.errors import GatewayError
from proxy.governance.reservations import Ask, Counters, Crossing, Hold, Refusal
from proxy.ops import logs
from proxy.state.memory import MemoryState
from proxy.state.redis import RedisState

PROBE_S = 0.5
"""How often an unreachable Redis is tried again (a PING with the call deadline)."""
BACKLOG_MAX = 100_000
"""Corrections kept while Redis is away (one per settled request); the oldest go first."""
FAILURES = (RedisError, OSError, TimeoutError)


def unavailable(retry_after_s: float) -> GatewayError:
    return GatewayError(
        503,
        "The gateway cannot reach its shared limits store; retry shortly.",
        type_="server_error",
        code="state_unavailable",
        retry_after_s=retry_after_s,
    )


class SharedState:
    """`LimitState` over Redis with the policy for an unreachable Redis.

    While Redis is away, `closed` refuses requests that need a limit or budget with a 503;
    `open` admits them against this process's own counters (the same limits, counted locally,
    never unlimited). Settlements and refunds Redis missed, and the spending of locally admitted
    requests, are kept and applied to Redis when it answers again, so no money is lost.
    """

    def __init__(self, remote: RedisState, *, fail_open: bool, timeout_s: float) -> None:
        self.remote = remote
        self.local = MemoryState()
        self.fail_open = fail_open
        self.timeout_s = timeout_s
        self.down = False
        self._backlog: deque[tuple[Hold, int, float, float]] = deque(maxlen=BACKLOG_MAX)
        self._probe: asyncio.Task[None] | None = None
        self._local_holds = 0

    def _failed(self, exc: BaseException, during: str) -> None:
        if not self.down:
            self.down = True
            logs.error(
                "state_unreachable",
                during=during,
                error=type(exc).__name__,
                policy="open: admitting with local counters" if self.fail_open else "closed: 503",
            )
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(
                self._recover(), name="state-probe"
            )

    async def reserve(self, ask: Ask, now: float) -> Hold | Refusal:
        if not self.down:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self.remote.reserve(ask, now)
            except FAILURES as exc:
                self._failed(exc, "reserve")
        if not self.fail_open:
            raise unavailable(PROBE_S * 2)
        self._local_holds += 1
        return await self.local.reserve(ask, now)

    async def settle(self, hold: Hold, tokens: int, usd: float, now: float) -> list[Crossing]:
        if not hold.ref:  # admitted locally while Redis was away
            crossings = await self.local.settle(hold, tokens, usd, now)
            self._backlog.append((hold, tokens, usd, now))
            self._flush_soon()
            return crossings
        return await self._adjust(hold, tokens - hold.ask.tokens, usd - hold.ask.usd, now)

    async def refund(self, hold: Hold, now: float) -> None:
        if not hold.ref:
            await self.local.refund(hold, now)
            return
        await self._adjust(hold, -hold.ask.tokens, -hold.ask.usd, now, soft=False)

    async def _adjust(
        self, hold: Hold, tokens: int, usd: float, now: float, *, soft: bool = True
    ) -> list[Crossing]:
        if not self.down:
            try:
                async with asyncio.timeout(self.timeout_s):
                    return await self.remote.adjust(hold, tokens, usd, now, soft=soft)
            except FAILURES as exc:
                self._failed(exc, "settle")
        self._backlog.append((hold, tokens, usd, now))
        return []

    def _flush_soon(self) -> None:
        if not self.down and (self._probe is None or self._probe.done()):
            self._probe = asyncio.get_running_loop().create_task(
                self._recover(), name="state-flush"
            )

    async def _recover(self) -> None:
        """Wait for Redis, then apply what it missed; runs until the backlog is empty."""
        while True:
            try:
                async with asyncio.timeout(self.timeout_s * 4):
                    await self.remote.client.ping()
                    while self._backlog:
                        hold, tokens, usd, now = self._backlog[0]
                        await self.remote.adjust(hold, tokens, usd, now, soft=False)
                        self._backlog.popleft()
            except FAILURES:
                await asyncio.sleep(PROBE_S)
                continue
            if self.down:
                self.down = False
                logs.event("state_recovered", local_admissions=self._local_holds)
                self._local_holds = 0
            return

    async def counters(self, scope: str, now: float) -> Counters:
        async with asyncio.timeout(self.timeout_s):
            return await self.remote.counters(scope, now)

    async def restore(self, spent: Mapping[tuple[str, str], float]) -> None:
        await self.local.restore(spent)
        try:
            async with asyncio.timeout(max(self.timeout_s, 2.0)):
                await self.remote.restore(spent)
        except FAILURES as exc:
            self._failed(exc, "restore")

    async def close(self) -> None:
        """Give pending corrections one last chance, then close the pool."""
        if self._backlog and not self.down:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recover(), timeout=2.0)
        if self._probe is not None:
            self._probe.cancel()
        if self._backlog:
            logs.error("state_backlog_lost", corrections=len(self._backlog))
        await self.remote.client.aclose()
