"""Each upstream's state as it is (healthy, ejected until T, probe pending, paused, drained)."""

from __future__ import annotations

from datetime import UTC, datetime

from proxy.config.values import Config
from proxy.routing.stats import Health, StatsRegistry

DRAINED = "drained"
"""Weight 0 in every tier that names it: kept in the config, sent no traffic."""
UNUSED = "unused"
"""Defined, but in no route."""


def _stamp(wall: float) -> str:
    return (
        datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def weights(snap: Config) -> dict[str, int]:
    """The largest weight each upstream has in any tier of any route (absent: in no route)."""
    out: dict[str, int] = {}
    for route in snap.routes.values():
        for tier in route.tiers:
            for m in tier.members:
                name = m.upstream.name
                out[name] = max(out.get(name, 0), m.weight)
    return out


def upstream_states(
    snap: Config, registry: StatsRegistry, now: float, wall: float
) -> dict[str, dict[str, object]]:
    """One entry per upstream: `state`, and `until` / `in_s` / `failure` where they apply.

    `now` is monotonic seconds (the stats' clock), `wall` the matching Unix time for `until`.
    """
    routed = weights(snap)
    out: dict[str, dict[str, object]] = {}
    for name, up in snap.upstreams.items():
        if routed.get(name, 0) == 0:
            out[name] = {"state": DRAINED if name in routed else UNUSED}
            continue
        st = registry.get(up)
        health = st.health(now)
        entry: dict[str, object] = {"state": health.value}
        if health is Health.RATE_LIMITED:
            until = st.limited_until
        elif health is Health.EJECTED:
            until = st.ejected_until
            entry["streak"] = st.failures
        else:
            until = 0.0
        if until:
            entry["until"] = _stamp(wall + until - now)
            entry["in_s"] = round(until - now, 1)
        if health is not Health.HEALTHY and st.last_failure is not None:
            entry["failure"] = st.last_failure.value
        out[name] = entry
    return out


def selectable(states: dict[str, dict[str, object]]) -> bool:
    """Ready: at least one upstream that takes traffic is in selection now."""
    return any(
        e["state"] in (Health.HEALTHY.value, Health.PROBE_PENDING.value) for e in states.values()
    )
