"""Which upstream a request tries next: tiers in order, health filter, strategy, panic mode."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from proxy.config.values import Config, Member, Price, Route, Strategy, Tier, Upstream
from proxy.governance.prices import estimate_cost, price_of
from proxy.routing.affinity import PinTable
from proxy.routing.capacity import limited
from proxy.routing.hedge_budget import HedgeBook
from proxy.routing.pinstore import SharedPins
from proxy.routing.ring import Ring, key_hash
from proxy.routing.selector import TierState, pick, pick_lowest, signature
from proxy.routing.stats import StatsRegistry, UpstreamStats
from proxy.routing.sticky import KeyValues


@dataclass(frozen=True, slots=True)
class Choice:
    member: Member
    stats: UpstreamStats
    tier_index: int


def busy(up: Upstream, st: UpstreamStats) -> bool:
    """At its `max_inflight`: skipped like an upstream out of selection until one ends."""
    return up.max_inflight is not None and st.inflight >= up.max_inflight


@dataclass(frozen=True, slots=True)
class Blocked:
    """Why nothing could be chosen: every upstream left is rate-limited or ejected."""

    retry_after_s: float
    rate_limited: bool


_NOTHING: frozenset[str] = frozenset()
NO_NEED = (0, 0)
"""A request's (prompt estimate, output cap) tokens, when the caller does not know them."""


class Balancer:
    """Selection state of one process: stats registry, per-tier rotation, seeded RNG."""

    __slots__ = (
        "_tiers",
        "hedges",
        "pins",
        "price_table",
        "registry",
        "response_pins",
        "rng",
        "shared_pins",
    )

    def __init__(
        self,
        registry: StatsRegistry,
        rng: random.Random | None = None,
        price_table: Mapping[str, Price] | None = None,
    ) -> None:
        self.registry = registry
        self.rng = rng or random.Random()
        self.price_table: Mapping[str, Price] = price_table or {}
        """Model prices for the `cost` strategy (an upstream's own `price` comes first)."""
        self._tiers: dict[str, TierState] = {}
        self.hedges = HedgeBook()
        """Hedge budgets per route and recent TTFBs per upstream."""
        self.pins = PinTable()
        """Prompt-cache affinity: where each conversation's cache lives (routes with it)."""
        self.response_pins = PinTable()
        """Responses API: which upstream stored each response id the gateway relayed."""
        self.shared_pins: SharedPins | None = None
        """Both pin tables shared with the other instances (the Redis state backend)."""

    def tier_state(self, tier: Tier) -> TierState:
        state = self._tiers.get(tier.key)
        if state is not None and state.tier is tier:
            return state
        # A new snapshot: keep the rotation if the tier's members and weights did not change.
        if state is not None and state.signature == signature(tier):
            state.tier = tier
            state.prices = None  # prices may have changed with the snapshot
            return state
        state = TierState(signature(tier))
        state.tier = tier
        self._tiers[tier.key] = state
        return state

    def adopt(self, config: Config, now: float = 0.0) -> tuple[list[str], list[str]]:
        """After a reload: keep stats of unchanged upstreams, drop state of vanished tiers."""
        live = {t.key for r in config.routes.values() for t in r.tiers}
        self._tiers = {k: v for k, v in self._tiers.items() if k in live}
        return self.registry.reconcile(config.upstreams.values(), now)

    def choose(
        self,
        route: Route,
        start_tier: int,
        tried: Collection[str],
        now: float,
        need: tuple[int, int] = NO_NEED,
        keys: KeyValues | None = None,
    ) -> Choice | None:
        """The next upstream to try, from tier `start_tier` on; None when no tier has one.
        `keys`: what a `sticky` tier hashes (None: sticky tiers pick by weight)."""
        tried_set = set(tried) if tried else _NOTHING
        for ti in range(start_tier, len(route.tiers)):
            choice = self._choose_in(route.tiers[ti], ti, tried_set, now, need, keys)
            if choice is not None:
                return choice
        return None

    def choose_again(self, route: Route, name: str, now: float) -> Choice | None:
        """Upstream `name` of this route once more, if it is still in selection (not ejected,
        not paused, not drained); used when no other candidate is left."""
        for ti, tier in enumerate(route.tiers):
            for m in tier.members:
                if m.upstream.name == name:
                    st = self.registry.get(m.upstream)
                    ok = m.weight > 0 and st.available(now) and not busy(m.upstream, st)
                    return Choice(m, st, ti) if ok else None
        return None

    def choose_panic(
        self, route: Route, tried: Iterable[str], now: float, need: tuple[int, int] = NO_NEED
    ) -> Choice | None:
        """Every upstream is out of selection: try an ejected one anyway, the soonest back first
        (never one rate-limited, nor one whose declared provider limit the request would pass)."""
        tried_set = set(tried)
        best: Choice | None = None
        best_remaining = 0.0
        for ti, tier in enumerate(route.tiers):
            for m in tier.members:
                st = self.registry.get(m.upstream)
                if m.weight == 0 or m.upstream.name in tried_set or st.limited_until > now:
                    continue
                if st.drained or busy(m.upstream, st):  # a drain holds even in panic mode
                    continue
                if limited(m.upstream) and st.capacity.headroom(m.upstream, sum(need), now) < 0:
                    continue
                remaining = st.remaining_s(now)
                if best is None or remaining < best_remaining:
                    best, best_remaining = Choice(m, st, ti), remaining
        return best

    def blocked(
        self, route: Route, tried: Iterable[str], now: float, need: tuple[int, int] = NO_NEED
    ) -> Blocked:
        tried_set = set(tried)
        waits: list[float] = []
        all_limited = True
        for tier in route.tiers:
            for m in tier.members:
                if m.weight == 0 or m.upstream.name in tried_set:
                    continue
                st = self.registry.get(m.upstream)
                if st.drained:
                    continue
                up = m.upstream
                if limited(up) and st.capacity.headroom(up, sum(need), now) < 0:
                    waits.append(max(st.remaining_s(now), st.capacity.wait_s(up, sum(need), now)))
                    continue
                waits.append(st.remaining_s(now))
                if st.limited_until <= now:
                    all_limited = False
        return Blocked(
            retry_after_s=min(waits, default=1.0) or 1.0, rate_limited=all_limited and bool(waits)
        )

    def _choose_in(
        self,
        tier: Tier,
        ti: int,
        tried: AbstractSet[str],
        now: float,
        need: tuple[int, int],
        keys: KeyValues | None = None,
    ) -> Choice | None:
        members = tier.members
        stats = [self.registry.get(m.upstream) for m in members]
        candidates = [
            i
            for i, m in enumerate(members)
            if m.weight > 0
            and m.upstream.name not in tried
            and stats[i].available(now)
            and not busy(m.upstream, stats[i])
            and (
                not limited(m.upstream)
                or stats[i].capacity.headroom(m.upstream, sum(need), now) >= 0
            )
        ]
        if not candidates:
            return None
        strategy = tier.strategy
        if strategy is Strategy.STICKY and keys is not None and tier.sticky_key is not None:
            i = self._sticky(tier, candidates, stats, keys.value(tier.sticky_key))
            if i is not None:
                return Choice(members[i], stats[i], ti)
            strategy = Strategy.WEIGHTED  # no key on this request: by weight
        if len(candidates) == 1:
            i = candidates[0]
            return Choice(members[i], stats[i], ti)
        if strategy is Strategy.COST:
            state = self.tier_state(tier)
            if state.prices is None:
                state.prices = [price_of(m.upstream, self.price_table) for m in members]
            costs = [estimate_cost(need[0], need[1], p) for p in state.prices]
            i = pick_lowest(candidates, costs, stats, now)
        elif strategy is Strategy.CAPACITY:
            room = [
                -st.capacity.headroom(m.upstream, sum(need), now)
                for m, st in zip(members, stats, strict=True)
            ]
            i = pick_lowest(candidates, room, stats, now)
        else:
            if strategy is Strategy.STICKY:
                strategy = Strategy.WEIGHTED
            weights = [m.weight for m in members]
            i = pick(strategy, candidates, weights, stats, self.tier_state(tier), self.rng, now)
        return Choice(members[i], stats[i], ti)

    def _sticky(
        self, tier: Tier, candidates: list[int], stats: list[UpstreamStats], key: bytes | None
    ) -> int | None:
        """The ring's member for this key among the candidates (bounded loads); None: no key."""
        if key is None:
            return None
        state = self.tier_state(tier)
        ring = state.ring
        if ring is None:
            ring = state.ring = Ring([(m.upstream.name, m.weight) for m in tier.members])
        inflight = [st.inflight for st in stats]
        return ring.lookup(key_hash(key), frozenset(candidates), inflight)
