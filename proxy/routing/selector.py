"""Pure choice of one upstream in a tier: smooth weighted, round robin, least busy, latency P2C."""

from __future__ import annotations

import random
from collections.abc import Sequence

from proxy.config.values import Price, Strategy, Tier
from proxy.routing.ring import Ring
from proxy.routing.stats import UpstreamStats


class TierState:
    """Rotation state of one tier (smooth weighted round robin counters, round robin cursor)."""

    __slots__ = ("current", "cursor", "prices", "ring", "signature", "tier")

    def __init__(self, signature: tuple[tuple[str, int], ...]) -> None:
        self.signature = signature
        self.tier: Tier | None = None
        """The Tier object this state last served (identity check, no per-request rebuild)."""
        self.current = [0] * len(self.signature)
        self.cursor = 0
        self.prices: list[Price | None] | None = None
        """The members' prices (`cost` strategy), resolved once per tier object."""
        self.ring: Ring | None = None
        """The `sticky` strategy's hash ring, built on first use; kept while the signature is."""


def signature(tier: Tier) -> tuple[tuple[str, int], ...]:
    return tuple((m.upstream.name, m.weight) for m in tier.members)


def pick(
    strategy: Strategy,
    candidates: Sequence[int],
    weights: Sequence[int],
    stats: Sequence[UpstreamStats],
    state: TierState,
    rng: random.Random,
    now: float,
) -> int:
    """Return one index from `candidates` (indices into the tier's members; never empty)."""
    if len(candidates) == 1:
        return candidates[0]
    if strategy is Strategy.WEIGHTED:
        return pick_weighted(candidates, weights, state)
    if strategy is Strategy.ROUND_ROBIN:
        return pick_round_robin(candidates, state)
    if strategy is Strategy.LEAST_BUSY:
        return pick_least_busy(candidates, weights, stats, rng)
    return pick_latency(candidates, weights, stats, rng, now)


def pick_weighted(candidates: Sequence[int], weights: Sequence[int], state: TierState) -> int:
    """nginx's smooth weighted round robin: exact proportions, evenly interleaved, deterministic."""
    current = state.current
    total = 0
    best = candidates[0]
    best_value = None
    for i in candidates:
        w = weights[i]
        current[i] += w
        total += w
        if best_value is None or current[i] > best_value:
            best, best_value = i, current[i]
    current[best] -= total
    return best


def pick_round_robin(candidates: Sequence[int], state: TierState) -> int:
    state.cursor += 1
    return candidates[state.cursor % len(candidates)]


def pick_least_busy(
    candidates: Sequence[int],
    weights: Sequence[int],
    stats: Sequence[UpstreamStats],
    rng: random.Random,
) -> int:
    """Fewest in-flight requests; ties go to a weighted random choice among the tied."""
    low = min(stats[i].inflight for i in candidates)
    tied = [i for i in candidates if stats[i].inflight == low]
    if len(tied) == 1:
        return tied[0]
    return _weighted_choice(tied, weights, rng)


def pick_latency(
    candidates: Sequence[int],
    weights: Sequence[int],
    stats: Sequence[UpstreamStats],
    rng: random.Random,
    now: float,
) -> int:
    """Power of two choices by weight, keeping the lower latency score (EWMA x load x failures)."""
    a = _weighted_choice(candidates, weights, rng)
    rest = [i for i in candidates if i != a]
    b = _weighted_choice(rest, weights, rng)
    sa, sb = stats[a].latency_score(now), stats[b].latency_score(now)
    if sa == sb:
        return a if rng.random() < 0.5 else b
    return a if sa < sb else b


def _weighted_choice(items: Sequence[int], weights: Sequence[int], rng: random.Random) -> int:
    total = sum(weights[i] for i in items)
    if total <= 0:
        return items[rng.randrange(len(items))]
    x = rng.random() * total
    for i in items:
        x -= weights[i]
        if x < 0:
            return i
    return items[-1]


def pick_lowest(
    candidates: Sequence[int], values: Sequence[float], stats: Sequence[UpstreamStats], now: float
) -> int:
    """The candidate with the lowest value (`cost`: USD; `capacity`: minus headroom); ties go to
    the better latency score, so equal prices still spread by speed."""
    low = min(values[i] for i in candidates)
    tied = [i for i in candidates if values[i] - low <= 1e-12 * max(1.0, abs(low))]
    if len(tied) == 1:
        return tied[0]
    return min(tied, key=lambda i: stats[i].latency_score(now))
