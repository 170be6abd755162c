"""The shared limits-and-budgets backend: every call one Lua script (one round trip) in Redis."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from redis.asyncio import BlockingConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxy.config.statesettings import StateSettings
from proxy.governance.limits import Limits
from proxy.governance.periods import Period, PeriodClock, period_end
from proxy.governance.reservations import Ask, Counters, Crossing, Hold, Quota, Refusal
from proxy.governance.windows import WINDOW_S, SlidingWindow, minute_of
from proxy.state import redis_scripts

PERIODS = {"usd_per_day": Period.DAY, "usd_per_month": Period.MONTH, "usd_total": Period.TOTAL}


def connect(settings: StateSettings) -> Redis:
    """A client with its own pool; no retries inside a call (a deadline is a deadline: the
    caller decides what a failure means), reconnecting on the next call by itself."""
    assert settings.url is not None
    # Blocking: a burst larger than the pool waits (up to the deadline) for a connection
    # instead of failing with "Too many connections".
    pool = BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.pool_size,
        timeout=settings.timeout_s,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        client_name="llm-gateway",
    )
    return Redis.from_pool(pool)


def _num(value: float | None) -> str:
    return "" if value is None else repr(value)


class RedisState:
    """`LimitState` in Redis: any number of gateway processes on any machines count together.
    Raises redis errors as they come; `SharedState` decides what an unreachable Redis means."""

    def __init__(self, client: Redis, prefix: str, lease_s: float = 1800.0) -> None:
        self.client = client
        self.prefix = prefix
        self.lease_s = lease_s
        self._reserve = client.register_script(redis_scripts.RESERVE)
        self._settle = client.register_script(redis_scripts.SETTLE)
        self._restore = client.register_script(redis_scripts.RESTORE)
        self._clock = PeriodClock()

    def _keys(self, scopes: Sequence[str]) -> list[str]:
        p = self.prefix
        return [k for s in scopes for k in (f"{p}s:{s}", f"{p}p:{s}")]

    async def reserve(self, ask: Ask, now: float) -> Hold | Refusal:
        periods = self._clock.ids(now)
        minute = minute_of(now)
        ref = os.urandom(9).hex()
        args: list[str | float] = [repr(now), minute, ask.tokens, repr(ask.usd)]
        args += [periods[0], periods[1], repr(self.lease_s), ref]
        for c in ask.claims:
            lim = c.limits
            args += [_num(lim.rpm), _num(lim.tpm), _num(lim.max_parallel)]
            args += [_num(lim.usd_per_day), _num(lim.usd_per_month), _num(lim.usd_total)]
        got = await self._reserve(keys=self._keys([c.scope for c in ask.claims]), args=args)
        if int(got[0]) == 0:
            return Hold(ask=ask, minute=minute, periods=periods, ref=ref)
        claim = ask.claims[int(got[0]) - 1]
        return _refusal(claim.scope, claim.limits, ask, str(got[1]), got[2:], now)

    async def settle(self, hold: Hold, tokens: int, usd: float, now: float) -> list[Crossing]:
        return await self.adjust(hold, tokens - hold.ask.tokens, usd - hold.ask.usd, now)

    async def refund(self, hold: Hold, now: float) -> None:
        await self.adjust(hold, -hold.ask.tokens, -hold.ask.usd, now, soft=False)

    async def adjust(
        self, hold: Hold, tokens: int, usd: float, now: float, *, soft: bool = True
    ) -> list[Crossing]:
        """Correct the hold's buckets by these amounts and end its lease (settle and refund;
        also how spending counted locally while Redis was away is added back)."""
        args: list[str | float] = [minute_of(now), hold.minute, tokens, repr(usd), hold.ref]
        args += [hold.periods[0], hold.periods[1]]
        for c in hold.ask.claims:
            lim = c.limits
            if soft:
                args += [_num(lim.usd_per_day), _num(lim.usd_per_month), _num(lim.usd_total)]
                args.append(repr(lim.soft_pct))
            else:
                args += ["", "", "", ""]
        scopes = [c.scope for c in hold.ask.claims]
        out = await self._settle(keys=self._keys(scopes), args=args)
        return [
            Crossing(
                scope=scopes[int(i) - 1],
                budget=str(budget),
                period=str(period),
                spent_usd=float(spent),
                limit_usd=float(getattr(hold.ask.claims[int(i) - 1].limits, str(budget))),
            )
            for i, budget, period, spent in out
        ]

    async def counters(self, scope: str, now: float) -> Counters:
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(f"{self.prefix}s:{scope}")
            pipe.zcount(f"{self.prefix}p:{scope}", now - self.lease_s, "+inf")
            fields, parallel = await pipe.execute()
        req, tok = _windows(fields, now)
        usd = {k[2:]: float(v) for k, v in fields.items() if k.startswith("u:")}
        return Counters(req.used(now), tok.used(now), int(parallel), usd)

    async def restore(self, spent: Mapping[tuple[str, str], float]) -> None:
        if not spent:
            return
        keys = [f"{self.prefix}s:{scope}" for scope, _ in spent]
        args: list[str] = []
        for (_, pid), usd in spent.items():
            args += [f"u:{pid}", repr(usd)]
        await self._restore(keys=keys, args=args)


def _windows(fields: Mapping[str, str], now: float) -> tuple[SlidingWindow, SlidingWindow]:
    req, tok = SlidingWindow(), SlidingWindow()
    m = int(fields.get("m", minute_of(now)))
    req.minute = tok.minute = m
    req.current, req.previous = float(fields.get("rc", 0)), float(fields.get("rp", 0))
    tok.current, tok.previous = float(fields.get("tc", 0)), float(fields.get("tp", 0))
    return req, tok


def _refusal(
    scope: str, limits: Limits, ask: Ask, limit: str, raw: Sequence[str], now: float
) -> Refusal:
    m, rc, rp, tc, tp, spent = raw
    fields = {"m": m, "rc": rc, "rp": rp, "tc": tc, "tp": tp}
    req, tok = _windows(fields, now)
    reset = WINDOW_S - (now % WINDOW_S)
    quotas: list[Quota] = []
    if limits.rpm is not None:
        left = max(0, int(limits.rpm - req.used(now)))
        quotas.append(Quota("requests", limits.rpm, left, reset))
    if limits.tpm is not None:
        left = max(0, int(limits.tpm - tok.used(now)))
        quotas.append(Quota("tokens", limits.tpm, left, reset))
    wait: float | None
    if limit == "max_parallel":
        wait = 1.0
    elif limit == "rpm":
        wait = req.retry_after(1, limits.rpm or 0, now)
    elif limit == "tpm":
        too_big = limits.tpm is not None and ask.tokens > limits.tpm
        wait = None if too_big else tok.retry_after(ask.tokens, limits.tpm or 0, now)
    else:
        end = period_end(PERIODS[limit], now)
        wait = end and end - now
    del spent
    return Refusal(scope, limit, wait, tuple(quotas))
