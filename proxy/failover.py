"""Walk a route's tiers: choose, attempt, classify the failure, record it, then retry or give up."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from proxy import logs
from proxy.balancer import Balancer, Choice
from proxy.body import Peek, ask_for_usage, rewrite_model
from proxy.config import Config, Endpoint, Route, Upstream
from proxy.errors import FAILOVER, PENALIZE, FailureKind, GatewayError, exhausted, no_upstream
from proxy.forward import AttemptFailed, Opened, open_attempt
from proxy.headers import upstream_headers
from proxy.retryafter import backoff_hint_s
from proxy.stats import Transition

DEFAULT_RATE_LIMIT_S = 1.0
"""Pause for an upstream that answered 429 without saying for how long."""


@dataclass(slots=True)
class Trace:
    """What the request went through, for response headers and the access log."""

    attempts: int = 0
    upstream: str | None = None
    failure: FailureKind | None = None
    status: int | None = None
    ttfb_s: float | None = None
    retry_after_s: float | None = None


@dataclass(slots=True)
class Winner:
    """The attempt whose answer goes to the client (a success, or a client error returned as is)."""

    opened: Opened
    choice: Choice
    probe: bool


@dataclass(slots=True)
class Call:
    """One client request as failover sees it: the snapshot it started on and its bytes."""

    snap: Config
    route: Route
    endpoint: Endpoint
    body: bytes
    peek: Peek
    client_headers: Mapping[str, str]
    request_id: str
    trace: Trace = field(default_factory=Trace)
    tried: list[str] = field(default_factory=list)
    bodies: dict[tuple[str | None, bool], bytes] = field(default_factory=dict)

    def body_for(self, up: Upstream) -> bytes:
        """The body for one upstream: its model id, and the usage option when it meters streams."""
        add_usage = self.strip_usage(up)
        key = (up.model, add_usage)
        out = self.bodies.get(key)
        if out is None:
            out = rewrite_model(self.body, self.peek.model, up.model) if up.model else self.body
            if add_usage:
                out = ask_for_usage(out, self.peek.has_stream_options)
            self.bodies[key] = out
        return out

    def strip_usage(self, up: Upstream) -> bool:
        """True when the gateway adds the usage chunk itself, so it must hide it again."""
        return (
            up.stream_usage
            and self.peek.stream
            and not self.peek.include_usage
            and self.endpoint is not Endpoint.EMBEDDINGS
        )


async def run(session: aiohttp.ClientSession, balancer: Balancer, call: Call) -> Winner:
    """Return the winning attempt, its stats acquired (the caller releases); or raise."""
    route, trace = call.route, call.trace
    tier = 0
    panicking = False
    while trace.attempts < route.max_attempts:
        now = time.monotonic()
        choice = None if panicking else balancer.choose(route, tier, call.tried, now)
        if choice is None and call.snap.panic and (trace.attempts == 0 or panicking):
            choice = balancer.choose_panic(route, call.tried, now)
            panicking = choice is not None
        if choice is None:
            break
        tier = choice.tier_index
        winner = await _attempt(session, balancer, call, choice)
        if winner is not None:
            return winner
    if trace.failure is None:
        blocked = balancer.blocked(route, call.tried, time.monotonic())
        trace.failure = FailureKind.RATE_LIMITED if blocked.rate_limited else None
        raise no_upstream(blocked.retry_after_s, rate_limited=blocked.rate_limited)
    raise _final_error(trace)


async def _attempt(
    session: aiohttp.ClientSession, balancer: Balancer, call: Call, choice: Choice
) -> Winner | None:
    """One attempt with its bookkeeping; None when it failed in a way that allows another."""
    trace = call.trace
    up = choice.member.upstream
    call.tried.append(up.name)
    trace.attempts += 1
    trace.upstream = up.name
    st = choice.stats
    probe = st.acquire(time.monotonic())
    try:
        opened = await open_attempt(
            session,
            choice.member,
            up.url(call.endpoint),
            call.body_for(up),
            upstream_headers(call.client_headers, up, call.request_id),
            stream=call.peek.stream,
        )
    except AttemptFailed as exc:
        st.release()
        _record_failure(balancer, choice, exc.kind, None, trace, time.monotonic())
        logs.attempt_failed(call.request_id, up.name, exc.kind, exc.detail)
        return None
    except BaseException:
        st.release()
        st.record_neutral()
        raise
    trace.status = opened.response.status
    if opened.failure is None:
        trace.ttfb_s = opened.ttfb_s
        st.record_ttfb(opened.ttfb_s, time.monotonic())
        _log_transition(up.name, st.record_success(time.monotonic()))
        return Winner(opened, choice, probe)
    if opened.failure is FailureKind.CLIENT_ERROR:
        st.record_neutral()
        trace.failure = opened.failure
        return Winner(opened, choice, probe)
    st.release()
    opened.response.release()
    if opened.failure is FailureKind.RATE_LIMITED:
        hint = backoff_hint_s(opened.response.headers, time.time())
        delay = DEFAULT_RATE_LIMIT_S if hint is None else hint
        st.record_rate_limit(time.monotonic(), delay)
        trace.retry_after_s = min(trace.retry_after_s or delay, delay)
    _record_failure(
        balancer, choice, opened.failure, opened.response.status, trace, time.monotonic()
    )
    logs.attempt_failed(call.request_id, up.name, opened.failure, f"status {trace.status}")
    return None


def _record_failure(
    balancer: Balancer,
    choice: Choice,
    kind: FailureKind,
    status: int | None,
    trace: Trace,
    now: float,
) -> None:
    trace.failure = kind
    trace.status = status
    st = choice.stats
    if kind in PENALIZE:
        _log_transition(st.name, st.record_failure(now, balancer.rng))
    else:
        st.record_neutral()


def _final_error(trace: Trace) -> GatewayError:
    kind = trace.failure
    assert kind is not None
    if kind not in FAILOVER:
        kind = FailureKind.RESET
    return exhausted(kind, trace.status, trace.retry_after_s)


def _log_transition(name: str, transition: Transition) -> None:
    if transition is not Transition.NONE:
        logs.health(name, transition.value)
