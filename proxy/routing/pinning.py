"""Prompt-cache affinity on the request path: go to the pinned upstream first, re-pin at settle."""

from __future__ import annotations

import time

from proxy.core.errors import previous_response_unavailable
from proxy.core.exchange import Exchange
from proxy.ops import logs
from proxy.providers.responses_ids import created_id
from proxy.routing.affinity import settle_pin
from proxy.routing.balancer import Balancer, Choice, busy

RESPONSE_RETENTION_S = 30 * 86400.0
"""How long a response id is remembered: the Responses API stores a response for 30 days."""


async def pinned(balancer: Balancer, ex: Exchange, now: float) -> Choice | None:
    """The conversation's pinned upstream when it can take the request; None to let the tier's
    strategy pick (no pin, or the pin is broken: why is logged and the pin dropped)."""
    key, route = ex.affinity_key, ex.route
    assert key is not None
    assert route is not None
    table = balancer.response_pins if ex.affinity_strict else balancer.pins
    pin = table.get(key, now)
    shared = balancer.shared_pins
    if pin is None and shared is not None:
        name = await shared.fetch(key)  # pinned by another instance
        if name is not None:
            ttl = RESPONSE_RETENTION_S if ex.affinity_strict else ex.affinity_ttl_s
            table.put(key, name, ttl, now)
            pin = table.get(key, now)
    if pin is None:
        return None  # a response id the gateway did not relay: any upstream may know it
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
            _broken(balancer, ex, key, pin.upstream, why, st.remaining_s(now))
            return None
    _broken(balancer, ex, key, pin.upstream, "not_in_route", 0.0)
    return None


def _broken(
    balancer: Balancer, ex: Exchange, key: str, upstream: str, why: str, wait_s: float
) -> None:
    if ex.affinity_strict:
        logs.event("response_home_unavailable", request_id=ex.id, upstream=upstream, reason=why)
        raise previous_response_unavailable(why, max(wait_s, 1.0))
    balancer.pins.drop(key)
    if balancer.shared_pins is not None:
        balancer.shared_pins.forget(key)
    logs.event(
        "affinity_broken", request_id=ex.id, upstream=upstream, reason=why, affinity=key[:10]
    )


def settle(balancer: Balancer, ex: Exchange) -> None:
    """After the answer: pin a new conversation, refresh on a cache read, move after a fault."""
    key = ex.affinity_key
    assert key is not None
    if ex.affinity_strict:
        return  # response ids are remembered when their answer starts (`remember_response`)
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
    if balancer.shared_pins is not None:
        balancer.shared_pins.push(key, upstream, ttl)
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


def remember_response(balancer: Balancer, ex: Exchange, first: bytes) -> None:
    """A Responses answer started: remember which upstream stores the response it creates."""
    rid, upstream = created_id(first), ex.upstream
    if rid is not None and upstream is not None:
        balancer.response_pins.put("r:" + rid, upstream, RESPONSE_RETENTION_S, time.monotonic())
        if balancer.shared_pins is not None:
            balancer.shared_pins.push("r:" + rid, upstream, RESPONSE_RETENTION_S)
