"""Walk a route's tiers: choose, attempt, and on a failure before the commit point try the next."""

from __future__ import annotations

import time

from proxy.core.errors import GatewayError, exhausted, no_upstream, unsupported
from proxy.core.exchange import Exchange
from proxy.core.failures import FAILOVER, FailureKind
from proxy.providers.catalog import PROVIDERS
from proxy.routing.attempt import Attempt
from proxy.routing.balancer import Balancer
from proxy.routing.send import AttemptFailed, Send


async def run(send: Send, balancer: Balancer, ex: Exchange) -> Attempt:
    """The winning attempt (its answer goes to the client; the caller ends it); or raise."""
    route = ex.route
    assert route is not None
    tier = 0
    panicking = False
    unfit: list[str] = []
    while ex.attempts < route.max_attempts:
        now = time.monotonic()
        choice = None if panicking else balancer.choose(route, tier, ex.tried, now)
        if choice is None and ex.snap.panic and (ex.attempts == 0 or panicking):
            choice = balancer.choose_panic(route, ex.tried, now)
            panicking = choice is not None
        if choice is None:
            break
        tier = choice.tier_index
        up = choice.member.upstream
        provider = PROVIDERS[up.provider]
        if not provider.supports(up, ex.endpoint):
            ex.tried.append(up.name)  # out of this request's choices; not an attempt
            unfit.append(up.name)
            continue
        request = provider.request(up, ex)
        attempt = Attempt(ex, choice, provider, balancer.rng)
        try:
            reply = await send(request, choice.member.timeouts, stream=ex.stream)
        except AttemptFailed as exc:
            attempt.failed(exc.kind, exc.detail)
            continue
        except BaseException:
            attempt.abandon()
            raise
        if attempt.answered(reply):
            return attempt
    if ex.attempts == 0 and unfit and not _any_fit(ex):
        raise unsupported(route.name, ex.endpoint.value)
    if ex.failure is None:
        blocked = balancer.blocked(route, ex.tried, time.monotonic())
        ex.failure = FailureKind.RATE_LIMITED if blocked.rate_limited else None
        raise no_upstream(blocked.retry_after_s, rate_limited=blocked.rate_limited)
    raise _final_error(ex)


def _final_error(ex: Exchange) -> GatewayError:
    kind = ex.failure
    assert kind is not None
    if kind not in FAILOVER:
        kind = FailureKind.RESET
    return exhausted(kind, ex.upstream_status, ex.retry_after_s)


def _any_fit(ex: Exchange) -> bool:
    """Whether some upstream of the route serves the endpoint (it may just be unavailable now)."""
    route = ex.route
    assert route is not None
    return any(
        PROVIDERS[m.upstream.provider].supports(m.upstream, ex.endpoint)
        for tier in route.tiers
        for m in tier.members
    )
