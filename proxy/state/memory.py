"""The embedded limits-and-budgets backend: one process, atomic because no call awaits inside."""

from __future__ import annotations

from collections.abc import Mapping

from proxy.governance.limits import Limits
from proxy.governance.periods import Period, PeriodClock, period_end
from proxy.governance.reservations import Ask, Counters, Crossing, Hold, Quota, Refusal
from proxy.governance.windows import WINDOW_S, SlidingWindow, minute_of

BUDGETS = (
    ("usd_per_day", Period.DAY),
    ("usd_per_month", Period.MONTH),
    ("usd_total", Period.TOTAL),
)


class _Scope:
    __slots__ = ("parallel", "requests", "soft_sent", "spent", "tokens")

    def __init__(self) -> None:
        self.requests = SlidingWindow()
        self.tokens = SlidingWindow()
        self.parallel = 0
        self.spent: dict[str, float] = {}
        self.soft_sent: set[str] = set()


class MemoryState:
    """`LimitState` in this process's memory; counters are lost on exit except what the ledger
    restores (spending), which is why budgets survive a restart and minute windows start empty."""

    def __init__(self) -> None:
        self._scopes: dict[str, _Scope] = {}
        self._clock = PeriodClock()

    def _scope(self, name: str) -> _Scope:
        s = self._scopes.get(name)
        if s is None:
            s = self._scopes[name] = _Scope()
        return s

    async def reserve(self, ask: Ask, now: float) -> Hold | Refusal:
        periods = self._clock.ids(now)
        for claim in ask.claims:
            refusal = _check(self._scope(claim.scope), claim.scope, claim.limits, ask, now, periods)
            if refusal is not None:
                return refusal
        minute = minute_of(now)
        for claim in ask.claims:
            s = self._scope(claim.scope)
            s.parallel += 1
            s.requests.add(1, now)
            s.tokens.add(ask.tokens, now)
            for pid in periods:
                s.spent[pid] = s.spent.get(pid, 0.0) + ask.usd
            if len(s.spent) > 6:
                for old in [k for k in s.spent if k not in periods]:
                    del s.spent[old]
        return Hold(ask=ask, minute=minute, periods=periods)

    async def settle(self, hold: Hold, tokens: int, usd: float, now: float) -> list[Crossing]:
        crossings: list[Crossing] = []
        for claim in hold.ask.claims:
            s = self._scope(claim.scope)
            s.parallel = max(0, s.parallel - 1)
            s.tokens.add(tokens - hold.ask.tokens, now, hold.minute)
            for (budget, _), pid in zip(BUDGETS, hold.periods, strict=True):
                spent = s.spent[pid] = max(0.0, s.spent.get(pid, 0.0) + usd - hold.ask.usd)
                limit = getattr(claim.limits, budget)
                if limit is None or spent < limit * claim.limits.soft_pct / 100:
                    continue
                mark = f"{budget}:{pid}"
                if mark not in s.soft_sent:
                    s.soft_sent.add(mark)
                    crossings.append(Crossing(claim.scope, budget, pid, spent, limit))
        return crossings

    async def refund(self, hold: Hold, now: float) -> None:
        for claim in hold.ask.claims:
            s = self._scope(claim.scope)
            s.parallel = max(0, s.parallel - 1)
            s.tokens.add(-hold.ask.tokens, now, hold.minute)
            for pid in hold.periods:
                s.spent[pid] = max(0.0, s.spent.get(pid, 0.0) - hold.ask.usd)

    async def counters(self, scope: str, now: float) -> Counters:
        s = self._scope(scope)
        return Counters(
            requests_1m=s.requests.used(now),
            tokens_1m=s.tokens.used(now),
            parallel=s.parallel,
            usd=dict(s.spent),
        )

    async def restore(self, spent: Mapping[tuple[str, str], float]) -> None:
        for (scope, pid), usd in spent.items():
            self._scope(scope).spent[pid] = usd


def _check(
    s: _Scope, scope: str, limits: Limits, ask: Ask, now: float, periods: tuple[str, ...]
) -> Refusal | None:
    if limits.max_parallel is not None and s.parallel >= limits.max_parallel:
        return Refusal(scope, "max_parallel", 1.0, _quotas(s, limits, now))
    if limits.rpm is not None and not s.requests.fits(1, limits.rpm, now):
        wait = s.requests.retry_after(1, limits.rpm, now)
        return Refusal(scope, "rpm", wait, _quotas(s, limits, now))
    if limits.tpm is not None:
        if ask.tokens > limits.tpm:
            return Refusal(scope, "tpm", None, _quotas(s, limits, now))
        if not s.tokens.fits(ask.tokens, limits.tpm, now):
            wait = s.tokens.retry_after(ask.tokens, limits.tpm, now)
            return Refusal(scope, "tpm", wait, _quotas(s, limits, now))
    for (budget, period), pid in zip(BUDGETS, periods, strict=True):
        limit: float | None = getattr(limits, budget)
        if limit is None:
            continue
        spent = s.spent.get(pid, 0.0)
        if spent >= limit or spent + ask.usd > limit:
            end = period_end(period, now)
            return Refusal(scope, budget, end and end - now, _quotas(s, limits, now))
    return None


def _quotas(s: _Scope, limits: Limits, now: float) -> tuple[Quota, ...]:
    out: list[Quota] = []
    reset = WINDOW_S - (now % WINDOW_S)
    if limits.rpm is not None:
        left = max(0, int(limits.rpm - s.requests.used(now)))
        out.append(Quota("requests", limits.rpm, left, reset))
    if limits.tpm is not None:
        left = max(0, int(limits.tpm - s.tokens.used(now)))
        out.append(Quota("tokens", limits.tpm, left, reset))
    return tuple(out)
