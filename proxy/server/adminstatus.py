"""The admin status document: every upstream's live signals, every route's tiers, the config."""

from __future__ import annotations

from collections.abc import Mapping

from proxy.config.values import Config
from proxy.routing.health_report import upstream_states
from proxy.routing.stats import StatsRegistry


def status(
    snap: Config,
    registry: StatsRegistry,
    now: float,
    wall: float,
    config: Mapping[str, object],
) -> dict[str, object]:
    """`config` says the generation, file hash and last reload; the rest is read from live
    stats (monotonic `now`, matching Unix `wall`)."""
    states = upstream_states(snap, registry, now, wall)
    upstreams: dict[str, dict[str, object]] = {}
    for name, up in snap.upstreams.items():
        st = registry.get(up)
        entry = dict(states[name])
        if st.drained:
            entry["state"] = "drained"
        entry["drained"] = st.drained
        entry["inflight"] = st.inflight
        entry["failure_streak"] = st.failures
        entry["ejections"] = st.ejections
        ttfb = st.ttfb_estimate(now)
        entry["ewma_ttfb_ms"] = round(ttfb * 1000, 1) if st.ewma_ttfb_s is not None else None
        upstreams[name] = entry
    routes: dict[str, object] = {}
    for rname, route in snap.routes.items():
        tiers = []
        for tier in route.tiers:
            members = {}
            for m in tier.members:
                st = registry.get(m.upstream)
                live = m.weight if st.available(now) else 0
                members[m.upstream.name] = {"weight": m.weight, "effective_weight": live}
            tiers.append({"from": tier.origin, "strategy": tier.strategy.value, "members": members})
        routes[rname] = {"max_attempts": route.max_attempts, "tiers": tiers}
    return {"config": dict(config), "upstreams": upstreams, "routes": routes}
