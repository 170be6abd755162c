"""Walk a route's tiers: choose, attempt, and on a failure before the commit point try the next."""

from __future__ import annotations

import asyncio
import time

from proxy.core.errors import GatewayError, exhausted, no_upstream, route_drained, unsupported
from proxy.core.exchange import Exchange
from proxy.core.failures import FAILOVER, FailureKind
from proxy.governance.estimate import request_tokens
from proxy.providers.base import UpstreamRequest
from proxy.providers.catalog import PROVIDERS
from proxy.routing import hedge
from proxy.routing.attempt import Attempt
from proxy.routing.backoff import fits_deadline, may_retry_same, retry_delay_s
from proxy.routing.balancer import Balancer, Choice
from proxy.routing.pinning import pinned
from proxy.routing.send import AttemptFailed, Send
from proxy.routing.sticky import KeyValues


async def run(send: Send, balancer: Balancer, ex: Exchange) -> Attempt:
    """The winning attempt (its answer goes to the client; the caller ends it); or raise."""
    route = ex.route
    assert route is not None
    tier = 0
    panicking = False
    need = request_tokens(ex)
    unfit: list[str] = []
    keys = _key_values(ex) if route.sticky else None
    while ex.attempts < route.max_attempts:
        if ex.affinity_strict and ex.pinned_to is not None and ex.attempts:
            break  # only the upstream that stored the previous response can continue it
        now = time.monotonic()
        choice = None
        if ex.affinity_key is not None and ex.attempts == 0:
            choice = await pinned(balancer, ex, now)  # prompt-cache affinity, before any strategy
        if choice is None and not panicking:
            choice = balancer.choose(route, tier, ex.tried, now, need, keys)
        if choice is None and ex.snap.panic and (ex.attempts == 0 or panicking):
            choice = balancer.choose_panic(route, ex.tried, now, need)
            panicking = choice is not None
        if choice is None:
            choice = await _again(balancer, ex)
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
        attempt = Attempt(ex, choice, provider, balancer.rng, sum(need))
        won = await _send_one(send, balancer, ex, attempt, request, need)
        if won is not None:
            return won
    raise _give_up(balancer, ex, need, bool(unfit))


def _key_values(ex: Exchange) -> KeyValues:
    user = ex.peek.user if ex.peek is not None else None
    return KeyValues(ex.client_headers, user, ex.key_name)


def _give_up(
    balancer: Balancer, ex: Exchange, need: tuple[int, int], had_unfit: bool
) -> GatewayError:
    """The error when no attempt answered: nothing fits, nothing is selectable, or the last
    failure."""
    route = ex.route
    assert route is not None
    if ex.attempts == 0 and had_unfit and not _any_fit(ex):
        return unsupported(route.name, ex.endpoint.value)
    if ex.failure is None:
        if not any(m.weight for tier in route.tiers for m in tier.members):
            return route_drained(route.name)
        blocked = balancer.blocked(route, ex.tried, time.monotonic(), need)
        ex.failure = FailureKind.RATE_LIMITED if blocked.rate_limited else None
        return no_upstream(blocked.retry_after_s, rate_limited=blocked.rate_limited)
    return _final_error(ex)


async def _send_one(
    send: Send,
    balancer: Balancer,
    ex: Exchange,
    attempt: Attempt,
    request: UpstreamRequest,
    need: tuple[int, int],
) -> Attempt | None:
    """One attempt (raced by a hedge when the route has one): the winner, or None to go on."""
    route = ex.route
    assert route is not None
    if route.hedge is not None and ex.hedge is None and not ex.affinity_strict:
        try:
            return await hedge.race(send, balancer, ex, attempt, request, need)
        except AttemptFailed:
            raise _final_error(ex) from None  # recorded by the race
    try:
        reply = await send(request, attempt.choice.member.timeouts, stream=ex.stream)
    except AttemptFailed as exc:
        attempt.failed(exc.kind, exc.detail)
        if exc.kind not in FAILOVER:
            raise _final_error(ex) from None
        return None
    except BaseException:
        attempt.abandon()
        raise
    return attempt if attempt.answered(reply) else None


async def _again(balancer: Balancer, ex: Exchange) -> Choice | None:
    """No other upstream is left: the one that just failed, again, after a short jittered
    pause, when its failure may heal and the pause still fits the request's deadline (the
    upstream's TTFB limit, counted from arrival)."""
    route = ex.route
    name = ex.upstream  # the last upstream attempted (an unfit one is tried, never attempted)
    if route is None or name is None or not may_retry_same(ex.failure, ex.upstream_status):
        return None
    choice = balancer.choose_again(route, name, time.monotonic())
    if choice is None:
        return None
    delay = retry_delay_s(ex.attempts, balancer.rng)
    if not fits_deadline(time.monotonic() - ex.started, delay, choice.member.timeouts.ttfb_s):
        return None
    await asyncio.sleep(delay)
    return balancer.choose_again(route, name, time.monotonic())


def _final_error(ex: Exchange) -> GatewayError:
    kind = ex.failure
    assert kind is not None
    if kind not in FAILOVER and kind is not FailureKind.RESPONSE_TOO_LARGE:
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
