"""Why each member of a route was or was not a candidate, for the routing trace."""

from __future__ import annotations

import hmac
from collections.abc import Collection, Mapping

from proxy.config.values import Config, Route, Strategy
from proxy.routing.balancer import busy
from proxy.routing.capacity import limited
from proxy.routing.stats import Health, StatsRegistry

EXPLAIN_HEADER = "x-gateway-explain"
ADMIN_TOKEN_HEADER = "x-gateway-admin-token"


def explain_allowed(headers: Mapping[str, str], snap: Config) -> bool:
    """`x-gateway-explain: 1`, from anyone when `[server] explain = true`, else with the admin
    token in `x-gateway-admin-token` (the client's own Authorization is its virtual key)."""
    if headers.get(EXPLAIN_HEADER) not in ("1", "true"):
        return False
    if snap.server.explain:
        return True
    token = snap.admin.token if snap.admin is not None else None
    given = headers.get(ADMIN_TOKEN_HEADER)
    return bool(token and given and hmac.compare_digest(given.encode(), token.encode()))


def considered(
    route: Route, registry: StatsRegistry, tried: Collection[str], now: float
) -> tuple[tuple[str, int, str], ...]:
    """(upstream, tier, verdict) for every member: its score, or why it was skipped."""
    out: list[tuple[str, int, str]] = []
    for ti, tier in enumerate(route.tiers):
        for m in tier.members:
            up = m.upstream
            st = registry.get(up)
            health = st.health(now)
            if m.weight == 0:
                why = "weight_0"
            elif health is Health.DRAINED:
                why = "drained"
            elif health is Health.EJECTED or health is Health.PROBING:
                why = health.value
            elif health is Health.RATE_LIMITED or st.limit_probing:
                why = "paused_429"
            elif limited(up) and st.capacity.headroom(up, 0, now) < 0:
                why = "over_capacity"
            elif busy(up, st):
                why = "busy_max_inflight"
            elif tier.strategy is Strategy.LATENCY:
                why = f"score:{st.latency_score(now):.4f}"
            elif tier.strategy is Strategy.LEAST_BUSY:
                why = f"inflight:{st.inflight}"
            else:
                why = f"weight:{m.weight}"
            if up.name in tried:
                why = f"tried,{why}"
            out.append((up.name, ti, why))
    return tuple(out)
