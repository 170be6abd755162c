"""What hedging remembers: per-route hedge budgets over a sliding minute, per-upstream TTFBs."""

from __future__ import annotations

import math
from collections import deque

from proxy.config.hedging import Hedge

WINDOW_S = 60.0
BUCKETS = 6
"""The sliding minute is kept as six 10 s buckets: old traffic leaves it in steps of 10 s."""
SAMPLES = 64
"""Recent TTFBs kept per upstream for a percentile delay."""
MIN_SAMPLES = 8
"""Below this many TTFBs an upstream's percentile is unknown: the delay is the floor x 4."""


class SlidingCount:
    """Events over the last minute, in fixed buckets (constant memory, no per-event list)."""

    __slots__ = ("_counts", "_epoch")

    def __init__(self) -> None:
        self._counts = [0] * BUCKETS
        self._epoch = [0] * BUCKETS

    def add(self, now: float, n: int = 1) -> None:
        slot = int(now // (WINDOW_S / BUCKETS))
        i = slot % BUCKETS
        if self._epoch[i] != slot:
            self._epoch[i], self._counts[i] = slot, 0
        self._counts[i] += n

    def total(self, now: float) -> int:
        slot = int(now // (WINDOW_S / BUCKETS))
        return sum(c for c, e in zip(self._counts, self._epoch, strict=True) if slot - e < BUCKETS)


class RouteBudget:
    """Requests and hedges of one route over the sliding minute."""

    __slots__ = ("hedges", "requests")

    def __init__(self) -> None:
        self.requests = SlidingCount()
        self.hedges = SlidingCount()

    def allows(self, policy: Hedge, now: float) -> bool:
        """One more hedge stays within budget_pct of the requests (or min_per_minute)."""
        cap = max(
            policy.min_per_minute, math.floor(self.requests.total(now) * policy.budget_pct / 100)
        )
        return self.hedges.total(now) < cap


class TtfbWindow:
    """An upstream's latest TTFBs (a hedged loser counts with the time it had when cancelled,
    a lower bound, so a slow upstream's percentile is not biased towards its fast answers)."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=SAMPLES)

    def add(self, ttfb_s: float) -> None:
        self._samples.append(ttfb_s)

    def quantile(self, q: float) -> float | None:
        if len(self._samples) < MIN_SAMPLES:
            return None
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


class HedgeBook:
    """Every route's budget and every upstream's TTFB window, for one process."""

    __slots__ = ("_budgets", "_ttfb", "closing")

    def __init__(self) -> None:
        self.closing: set[object] = set()
        """Cancelled losing attempts, referenced until they have closed their connections."""
        self._budgets: dict[str, RouteBudget] = {}
        self._ttfb: dict[str, TtfbWindow] = {}

    def budget(self, route: str) -> RouteBudget:
        b = self._budgets.get(route)
        if b is None:
            b = self._budgets[route] = RouteBudget()
        return b

    def ttfb(self, upstream: str) -> TtfbWindow:
        w = self._ttfb.get(upstream)
        if w is None:
            w = self._ttfb[upstream] = TtfbWindow()
        return w

    def delay_s(self, policy: Hedge, upstream: str) -> float:
        """How long the first attempt may go without a first byte before the hedge starts."""
        if policy.after_s is not None:
            return policy.after_s
        assert policy.percentile is not None
        q = self.ttfb(upstream).quantile(policy.percentile)
        return policy.floor_s * 4 if q is None else max(policy.floor_s, q)
