"""Prompt-cache affinity on the request path: go to the pinned upstream first, re-pin at settle."""

from __future__ import annotations

import time

from proxy.core.exchange import Exchange
from proxy.ops import logs
from proxy.routing.affinity import settle_pin
from proxy.routing.balancer import Balancer, Choice, busy


def pinned(balancer: Balancer, ex: Exchange, now: float) -> Choice | None:
    """The conversation's pinned upstream when it can take the request; None to let the tier's
    strategy pick (no pin, or the pin is broken: why is logged and the pin dropped)."""
    key, route = ex.affinity_key, ex.route
    assert key is not None
    assert route is not None
    pin = balancer.pins.get(key, now)
    if pin is None:
        return None
    ex.pinned_to = pin.upstream
    for ti, tier in enumerate(route.tiers):
        for m in tier.members:
            if m.upstream.name != pin.upstream:
                continue
            st = balancer.registry.get(m.upstream)
            if st.limited_until > now:
                why = "rate_limited"
            elif st.drained or m.weight == 0:
                why = "drained"
            elif not st.available(now):
                why = "ejected"
            elif busy(m.upstream, st):
                return None  # momentarily full: not a reason to move the conversation's cache
            else:
                return Choice(m, st, ti)
            _broken(balancer, ex, key, pin.upstream, why)
            return None
    _broken(balancer, ex, key, pin.upstream, "not_in_route")
    return None


def _broken(balancer: Balancer, ex: Exchange, key: str, upstream: str, why: str) -> None:
    balancer.pins.drop(key)
    logs.event(
        "affinity_broken", request_id=ex.id, upstream=upstream, reason=why, affinity=key[:10]
    )


def settle(balancer: Balancer, ex: Exchange) -> None:
    """After the answer: pin a new conversation, refresh on a cache read, move after a fault."""
    key = ex.affinity_key
    assert key is not None
    answered = ex.upstream if ex.status < 400 else None
    now = time.monotonic()
    pin = balancer.pins.get(key, now)
    usage = ex.usage
    read = usage is not None and usage.tokens_cached > 0
    decision = settle_pin(pin, answered, read, now, ex.affinity_ttl_s)
    if decision is None:
        return
    upstream, ttl = decision
    balancer.pins.put(key, upstream, ttl, now)
    was = ex.pinned_to
    if was is not None and was != upstream:
        why = next((k.value for name, k in ex.failed if name == was), "unavailable")
        logs.event(
            "affinity_moved",
            request_id=ex.id,
            upstream=was,
            to=upstream,
            reason=why,
            affinity=key[:10],
        )
