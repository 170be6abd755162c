"""Hedged attempts: when the first has no first byte in time, race a second on another upstream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable

from proxy.core.exchange import Exchange
from proxy.core.failures import FAILOVER
from proxy.ops import logs
from proxy.providers.base import UpstreamRequest
from proxy.providers.catalog import PROVIDERS
from proxy.routing.attempt import Attempt
from proxy.routing.balancer import Balancer
from proxy.routing.hedge_budget import HedgeBook
from proxy.routing.send import AttemptFailed, Reply, Send

_Racer = tuple[Attempt, float]
"""An attempt in the race and the monotonic time it was sent."""


async def race(
    send: Send,
    balancer: Balancer,
    ex: Exchange,
    first: Attempt,
    request: UpstreamRequest,
    need: tuple[int, int],
) -> Attempt | None:
    """Send `first`; if it has no answer within the route's hedge delay, and the route's hedge
    budget allows and another upstream is available, send a second attempt too.

    The first answer that commits (a success or a client error) wins and every other attempt is
    cancelled at once (connection closed, nothing reaches the client); a failing attempt is
    recorded as in failover and the race goes on with the other. Returns the winner, or None
    when every attempt failed (failover goes on). Raises AttemptFailed for a failure that must
    not fail over.
    """
    route = ex.route
    assert route is not None
    assert route.hedge is not None
    policy = route.hedge
    book = balancer.hedges
    budget = book.budget(route.name)
    if ex.attempts == 1:
        budget.requests.add(time.monotonic())
    racers: dict[asyncio.Future[Reply], _Racer] = {}
    racers[_start(send, first, request, ex)] = (first, time.monotonic())
    try:
        delay = book.delay_s(policy, first.upstream.name)
        done, _ = await asyncio.wait(racers, timeout=delay)
        if not done:
            now = time.monotonic()
            second = _second(balancer, ex, first, need, now) if budget.allows(policy, now) else None
            if second is not None:
                budget.hedges.add(now)
                ex.hedge = "started"
                logs.event(
                    "hedge_started",
                    request_id=ex.id,
                    upstream=first.upstream.name,
                    hedge=second[0].upstream.name,
                    after_ms=round(delay * 1000, 1),
                )
                racers[_start(send, second[0], second[1], ex)] = (second[0], now)
        while racers:
            done, _ = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                attempt, _sent = racers.pop(task)
                try:
                    reply = task.result()
                except AttemptFailed as exc:
                    attempt.failed(exc.kind, exc.detail)
                    if exc.kind not in FAILOVER:
                        raise
                    continue
                book.ttfb(attempt.upstream.name).add(reply.ttfb_s)
                if attempt.answered(reply):
                    ex.upstream = attempt.upstream.name
                    if ex.hedge is not None:
                        ex.hedge = "won" if attempt is not first else "lost"
                    return attempt
        return None
    finally:
        _cancel(racers, book, ex)


def _start(
    send: Send, attempt: Attempt, request: UpstreamRequest, ex: Exchange
) -> asyncio.Future[Reply]:
    """The attempt as a task of the race, named; the race holds it until it wins or is
    cancelled, and the book holds a cancelled loser until it has finished closing."""
    sending = send(request, attempt.choice.member.timeouts, stream=ex.stream)
    name = f"attempt {ex.id} {attempt.upstream.name}"
    return asyncio.get_running_loop().create_task(_awaited(sending), name=name)


async def _awaited(sending: Awaitable[Reply]) -> Reply:
    return await sending


def _second(
    balancer: Balancer, ex: Exchange, first: Attempt, need: tuple[int, int], now: float
) -> tuple[Attempt, UpstreamRequest] | None:
    """Another upstream for the hedge: the same tier first, then later ones; never the first's."""
    route = ex.route
    assert route is not None
    if ex.attempts >= route.max_attempts:
        return None
    skipped: list[str] = []
    while True:
        choice = balancer.choose(route, first.choice.tier_index, [*ex.tried, *skipped], now, need)
        if choice is None:
            return None
        provider = PROVIDERS[choice.member.upstream.provider]
        if provider.supports(choice.member.upstream, ex.endpoint):
            break
        skipped.append(choice.member.upstream.name)  # cannot serve this endpoint: not a hedge
    request = provider.request(choice.member.upstream, ex)
    return Attempt(ex, choice, provider, balancer.rng, sum(need)), request


def _cancel(racers: dict[asyncio.Future[Reply], _Racer], book: HedgeBook, ex: Exchange) -> None:
    """The losers: cancelled at once (the sender closes their connections), with no health
    signal (they were not wrong, only slower); the TTFB they had reached, a lower bound, feeds
    their latency estimate and their TTFB window. No await: safe while being cancelled."""
    now = time.monotonic()
    for task, (attempt, sent) in racers.items():
        if task.done() and not task.cancelled() and task.exception() is None:
            attempt.reply = task.result()  # answered just as it lost: closed by abandon
        else:
            task.cancel()
            book.closing.add(task)
            task.add_done_callback(book.closing.discard)
            task.add_done_callback(_retrieve)
        waited = now - sent
        attempt.choice.stats.record_ttfb(waited, now)
        book.ttfb(attempt.upstream.name).add(waited)
        logs.event(
            "hedge_cancelled",
            request_id=ex.id,
            upstream=attempt.upstream.name,
            waited_ms=round(waited * 1000, 1),
        )
        attempt.abandon()
    racers.clear()


def _retrieve(task: asyncio.Future[Reply]) -> None:
    """A cancelled loser may still have ended with a failure: it is not worth a log line."""
    if not task.cancelled():
        task.exception()
