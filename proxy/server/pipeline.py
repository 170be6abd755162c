"""The proxied endpoints as fixed stages: receive, admit, lookup, failover, respond, settle.

Each request is one `Exchange`, filled stage by stage and settled exactly once. Stages are a
fixed timeline rather than a chain of handler wrappers, because a streamed answer outlives
the handler's return value: the commit point sits inside `respond`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

from proxy.cache.flight import Flight
from proxy.config.values import Endpoint, Route
from proxy.core.dialect_errors import error_body, stream_error_maker
from proxy.core.errors import GatewayError, model_not_found
from proxy.core.exchange import Exchange
from proxy.core.failures import FailureKind
from proxy.core.scrub import scrubbed, scrubber
from proxy.governance.estimate import tokens_of
from proxy.governance.limits import Key
from proxy.ops import access, explain, logs
from proxy.providers.openai_body import peek_body
from proxy.routing import failover, pinning
from proxy.routing.attempt import Attempt
from proxy.routing.redirect import Facts, resolve
from proxy.routing.sticky import KeyValues
from proxy.server import caching
from proxy.server.agentprep import follow_response, prepare
from proxy.server.bodyread import read_body
from proxy.server.candidates import EXPLAIN_HEADER, considered, explain_allowed
from proxy.server.count_tokens import estimate
from proxy.server.edge import BODY_TIMEOUT, TOO_MANY_REQUESTS, EdgeRequestHandler
from proxy.server.inflightbodies import BodyClaim
from proxy.server.runtime import Gateway
from proxy.server.streamout import StreamAnswer
from proxy.server.whole import whole
from proxy.transport.headers import forward_headers, passed_response_headers, valid_request_id
from proxy.transport.relay import STREAM_HEADERS, StreamRelay, answered_whole, end_code

"""Bodies of known length above this are read into one preallocated buffer."""
_INTERNAL = GatewayError(
    500, "Internal gateway error.", type_="server_error", code="internal_error"
)
_SHUTTING_DOWN = GatewayError(
    503,
    "The gateway is shutting down; retry on another instance.",
    type_="server_error",
    code="server_shutting_down",
    retry_after_s=1.0,
)


def proxy_handler(
    endpoint: Endpoint, gw: Gateway
) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        return await run(request, gw, endpoint)

    return handle


async def run(request: web.BaseRequest, gw: Gateway, endpoint: Endpoint) -> web.StreamResponse:
    """One client request, as a timeline."""
    ex = _open(request, gw, endpoint)
    gw.drain.enter()
    receiving = gw.drain.start_receiving()  # SIGTERM closes it until the body is in
    claim = gw.bodies.claim(ex.snap.server.max_inflight_body_bytes)
    try:
        if (cap := ex.snap.server.max_requests) is not None and gw.drain.inflight > cap:
            raise TOO_MANY_REQUESTS
        key = gw.governor.authenticate(ex)  # virtual key, before the body is read     401
        await receive(request, ex, claim)  # body (capped), peek, route  400 / 404 / 413 / 503
        if gw.tracer is not None:
            gw.tracer.inject(ex)
        gw.drain.done_receiving(receiving)
        await admit(gw, ex, key)  # route allowed, limits, budget reservation    403 / 429
        local = estimate(ex)  # count_tokens no upstream of the route can answer
        if local is not None:
            return local
        # The response cache, only on a route with `cache` (one check): a hit is answered here.
        if (
            ex.route is not None
            and ex.route.cache is not None
            and (cached := await lookup(request, gw, ex)) is not None
        ):
            return cached
        win = await choose_and_send(gw, ex)  # failover until an upstream answers  502 / 503 / 504
        return await respond(request, gw, ex, win)  # the commit point, then the relay
    except GatewayError as exc:
        ex.status = exc.status
        ex.error_code = exc.code
        return _error_response(exc, ex, gw.drain.draining)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task in gw.drain.cut:
            # Cancelled by the drain deadline, not by the client: say so, with a 503.
            gw.drain.cut.discard(task)
            task.uncancel()
            ex.status = 503
            ex.error_code = _SHUTTING_DOWN.code
            return _error_response(_SHUTTING_DOWN, ex, draining=True)
        ex.status = 499
        ex.failure = FailureKind.CLIENT_GONE
        raise
    except Exception as exc:  # noqa: BLE001 - last resort: an OpenAI-shaped 500, never a trace
        logs.error("internal_error", request_id=ex.id, error=type(exc).__name__)
        ex.status = 500
        ex.error_code = _INTERNAL.code
        return _error_response(_INTERNAL, ex, gw.drain.draining)
    finally:
        claim.release()
        gw.drain.done_receiving(receiving)
        if ex.cache_ticket is not None:
            _land(gw, ex)  # a cache miss: store a complete success, release the followers
        try:
            if not gw.governor.settle_now(ex):  # no coroutine when no reservation is held
                await gw.governor.settle(ex)  # no await inside in memory: safe when cancelled
        finally:
            gw.drain.leave()
            settle(ex, gw)


def _open(request: web.BaseRequest, gw: Gateway, endpoint: Endpoint) -> Exchange:
    rid = request.headers.get("x-request-id")
    if rid is None or not valid_request_id(rid):
        rid = gw.new_request_id()
    ex = Exchange(
        id=rid,
        endpoint=endpoint,
        snap=gw.store.current,  # read once: the whole request runs on this snapshot
        started=time.monotonic(),
        wall_started=time.time(),
        client_headers=request.headers,
        path=request.path,
        client=request.remote,
    )
    if EXPLAIN_HEADER in request.headers:
        ex.explain = explain_allowed(request.headers, ex.snap)
    if gw.tracer is not None:
        gw.tracer.begin(ex)
    return ex


async def receive(request: web.BaseRequest, ex: Exchange, claim: BodyClaim) -> None:
    """Read the body within the snapshot's caps, peek at what routing needs, find the route."""
    server = ex.snap.server
    try:
        if request.content.is_eof():
            # The whole body is already here (the usual case for a prompt): nothing to time.
            body = await read_body(request, server.max_body_bytes, claim, None)
        else:
            async with asyncio.timeout(server.body_timeout_s) as deadline:
                body = await read_body(
                    request, server.max_body_bytes, claim, deadline, server.body_timeout_s
                )
    except TimeoutError:
        if isinstance(request.protocol, EdgeRequestHandler):
            request.protocol.no_linger()
        raise BODY_TIMEOUT from None
    # The body forwarded is the one the gateway understood (a duplicated key collapsed).
    pk, ex.body = peek_body(body)
    ex.peek = pk
    route = ex.snap.routes.get(pk.model)
    if route is None:
        raise model_not_found(pk.model)
    if route.redirects:  # rules or a split: one attribute check when a route has neither
        route = _redirect(ex, route)
    ex.route = route
    if route.agent is not None:
        prepare(ex, route.agent)  # cache hygiene, affinity key
    if ex.endpoint is Endpoint.RESPONSES:
        follow_response(ex)  # previous_response_id: the upstream that stored it
    ex.forward_headers = forward_headers(ex.client_headers, ex.id)


def _redirect(ex: Exchange, route: Route) -> Route:
    """The route the request's context rules and A/B split send it to."""
    pk = ex.peek
    assert pk is not None
    facts = Facts(
        tokens=tokens_of(len(ex.body)),
        tools=pk.tools,
        stream=pk.stream,
        team=ex.team,
        headers=ex.client_headers,
        body=ex.body,
    )
    keys = KeyValues(ex.client_headers, pk.user, ex.key_name)
    found = resolve(route, ex.snap.routes, facts, keys, ex.id.encode())
    ex.arm = found.arm
    return found.route


async def admit(gw: Gateway, ex: Exchange, key: Key | None) -> None:
    """May this key use this route now: allowed routes, rate limits, budget reservations."""
    await gw.governor.admit(ex, key)


async def lookup(request: web.BaseRequest, gw: Gateway, ex: Exchange) -> web.StreamResponse | None:
    """An answer already known for this exact request, or being fetched by an identical one
    (the response cache); None: ask upstream. A route without `cache` costs one check."""
    route = ex.route
    rc = None if route is None else route.cache
    if rc is None or gw.cache is None:
        return None
    found, key = await gw.cache.find(ex, rc)
    if found is None:
        return None
    headers = _gateway_headers(ex, gw.drain.draining)
    headers["x-gateway-cost-usd"] = "0.00000000"  # a hit or a follower pays nothing
    if isinstance(found, Flight):
        resp = await caching.follow(request, ex, found, headers)
        if resp is None:
            gw.cache.miss(ex, rc, key, True, None)  # the leader failed: ask upstream alone
        return resp
    caching.hit_usage(ex, found)
    resp = await caching.answer(request, ex, found, headers)
    if resp is None:
        gw.cache.miss(ex, rc, key, True, None)
    return resp


def _land(gw: Gateway, ex: Exchange) -> None:
    if gw.cache is not None:
        gw.cache.land(ex)


async def choose_and_send(gw: Gateway, ex: Exchange) -> Attempt:
    """Failover across the route's tiers until an upstream answers; the drain can cut it."""
    task: asyncio.Task[object] | None = asyncio.current_task()
    if task is not None:
        gw.drain.waiting.add(task)
    try:
        return await failover.run(gw.send, gw.balancer, ex)
    finally:
        if task is not None:
            gw.drain.waiting.discard(task)
        if ex.explain and ex.route is not None:
            now = time.monotonic()
            ex.considered = considered(ex.route, gw.balancer.registry, ex.tried, now)


async def respond(
    request: web.BaseRequest, gw: Gateway, ex: Exchange, win: Attempt
) -> web.StreamResponse:
    """Answer with the winning attempt: a whole body, or a relayed stream (after the commit)."""
    with win:
        reply = win.reply
        assert reply is not None
        headers = _gateway_headers(ex, gw.drain.draining)
        if ex.endpoint is Endpoint.RESPONSES and reply.status < 300:
            pinning.remember_response(gw.balancer, ex, reply.first)
        # An upstream may echo the credential it was sent (in an error, a header): scrub it.
        secrets = ex.snap.secrets  # none configured: no scrubber lookup at all
        scrub = scrubber(secrets) if secrets else None
        passed = passed_response_headers(reply.headers)
        headers.update(scrub.clean_headers(passed) if scrub and passed else passed)
        if not ex.stream or reply.status != 200 or answered_whole(reply.headers):
            headers["Content-Type"] = reply.headers.get("Content-Type", "application/json")
            body = reply.first
            if reply.status < 300:
                ex.usage = usage = win.provider.usage(body)
                ex.out_tokens_guess = tokens_of(len(body))
                ex.cost_usd = gw.governor.cost_of(ex, usage)  # settle reuses it
                headers["x-gateway-cost-usd"] = f"{ex.cost_usd:.8f}"
            elif scrub:
                body = scrub.clean(body)
            ex.status = reply.status
            body = win.provider.answer(reply.status, body, ex)
            ticket = ex.cache_ticket
            if ticket is not None and reply.status < 300:
                cast(caching.Ticket, ticket).add(body)
            return whole(reply.status, body, headers)  # one write, no header multidict
        return await _relay(request, gw, ex, win, headers)


async def _relay(
    request: web.BaseRequest, gw: Gateway, ex: Exchange, win: Attempt, headers: dict[str, str]
) -> web.StreamResponse:
    reply = win.reply
    assert reply is not None
    headers.update(STREAM_HEADERS)
    out = StreamAnswer(request, headers)
    stream_filter = scrubbed(win.provider.stream(win.upstream, ex), ex.snap.secrets)
    relay = StreamRelay(
        reply,
        win.choice.member.timeouts,
        stream_filter,
        progress=win.provider.progress(),
        error_event=stream_error_maker(ex.endpoint),
        keepalive_s=agent.keepalive_s if (agent := ex.route and ex.route.agent) else None,
    )
    gw.drain.streams.add(relay)
    try:
        await out.start()  # the commit point: no failover after this line
        ex.status = 200
        ticket = ex.cache_ticket
        if ticket is None:
            await relay.run(out)
        else:
            cast(caching.Ticket, ticket).streaming()
            await relay.run(caching.Tap(out, cast(caching.Ticket, ticket)))
    except asyncio.CancelledError:
        ex.failure = FailureKind.CLIENT_GONE
        ex.status = 499
        raise
    except ConnectionError:
        # The client went away while we wrote: nothing more to send, and no server error.
        ex.failure = FailureKind.CLIENT_GONE
        ex.status = 499
        win.end(close=True)
        return out.response()
    finally:
        gw.drain.streams.discard(relay)
        ex.usage = stream_filter.usage
        ex.out_tokens_guess = relay.events
    if relay.failure is not None:
        ex.error_code = end_code(relay.failure)
        win.broke(relay.failure)
    return out.response()


def settle(ex: Exchange, gw: Gateway | None = None) -> None:
    """Exactly once per request, whatever happened: the access line, metrics, the trace."""
    if ex.snap.server.access_log:
        access.write(ex)
    if gw is not None and gw.metrics is not None:
        now = time.monotonic()
        gw.metrics.record(ex, now)
        if gw.recent is not None:
            gw.recent.record(ex, now - ex.started)
    if gw is not None and ex.affinity_key is not None:
        pinning.settle(gw.balancer, ex)
    if ex.explain:
        logs.debug("routing_trace", request_id=ex.id, trace=explain.header(ex))
    if gw is not None and gw.tracer is not None:
        gw.tracer.end(ex, time.time())


def _gateway_headers(ex: Exchange, draining: bool) -> dict[str, str]:
    headers = {"x-request-id": ex.id, "x-gateway-attempts": str(ex.attempts)}
    if ex.upstream is not None:
        headers["x-gateway-upstream"] = ex.upstream
    if ex.explain:
        headers[EXPLAIN_HEADER] = explain.header(ex)
    if ex.hedge is not None:
        headers["x-gateway-hedge"] = ex.hedge
    if ex.cache is not None:
        headers[caching.HEADER] = ex.cache
    route = ex.route
    if route is not None and ex.peek is not None and route.name != ex.peek.model:
        headers["x-gateway-route"] = route.name  # a context rule or split moved the request
        if ex.arm is not None:
            headers["x-gateway-arm"] = ex.arm
    if draining:
        headers["Connection"] = "close"
    return headers


def _error_response(exc: GatewayError, ex: Exchange, draining: bool) -> web.Response:
    headers = exc.headers()
    headers.update(_gateway_headers(ex, draining))
    if ex.cache is None and ex.route is not None and ex.route.cache is not None:
        headers[caching.HEADER] = "skip"  # refused before the lookup (a limit, a budget)
    resp = web.Response(status=exc.status, body=error_body(exc, ex.endpoint), headers=headers)
    if exc is BODY_TIMEOUT:
        resp.force_close()
    return resp
