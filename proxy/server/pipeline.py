"""The proxied endpoints as fixed stages: receive, admit, lookup, failover, respond, settle.

Each request is one `Exchange`, filled stage by stage and settled exactly once. Stages are a
fixed timeline rather than a chain of handler wrappers, because a streamed answer outlives
the handler's return value: the commit point sits inside `respond`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from proxy.config.values import Endpoint
from proxy.core.dialect_errors import error_body, stream_error_maker
from proxy.core.errors import GatewayError, model_not_found, too_large
from proxy.core.exchange import Exchange
from proxy.core.failures import FailureKind
from proxy.ops import access, logs
from proxy.providers.openai_body import peek
from proxy.routing import failover
from proxy.routing.attempt import Attempt
from proxy.server.count_tokens import estimate
from proxy.server.runtime import GATEWAY, Gateway
from proxy.transport.headers import forward_headers, passed_response_headers, valid_request_id
from proxy.transport.relay import STREAM_HEADERS, StreamRelay

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
    endpoint: Endpoint,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await run(request, endpoint)

    return handle


async def run(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    """One client request, as a timeline."""
    gw = request.app[GATEWAY]
    ex = _open(request, gw, endpoint)
    gw.drain.enter()
    try:
        await receive(request, ex)  # body (capped), peek, route            400 / 404 / 413
        admit(gw, ex)  # virtual key, limits, budget reservation        401 / 403 / 429
        local = estimate(ex)  # count_tokens no upstream of the route can answer
        if local is not None:
            return local
        cached = lookup(gw, ex)  # response cache                              hit: answered
        if cached is not None:
            return cached
        win = await choose_and_send(gw, ex)  # failover until an upstream answers  502 / 503 / 504
        return await respond(request, gw, ex, win)  # the commit point, then the relay
    except GatewayError as exc:
        ex.status = exc.status
        return _error_response(exc, ex, gw.drain.draining)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task in gw.drain.cut:
            # Cancelled by the drain deadline, not by the client: say so, with a 503.
            gw.drain.cut.discard(task)
            task.uncancel()
            ex.status = 503
            return _error_response(_SHUTTING_DOWN, ex, draining=True)
        ex.status = 499
        ex.failure = FailureKind.CLIENT_GONE
        raise
    except Exception as exc:  # noqa: BLE001 - last resort: an OpenAI-shaped 500, never a trace
        logs.error("internal_error", request_id=ex.id, error=type(exc).__name__)
        ex.status = 500
        return _error_response(_INTERNAL, ex, gw.drain.draining)
    finally:
        gw.drain.leave()
        settle(ex)


def _open(request: web.Request, gw: Gateway, endpoint: Endpoint) -> Exchange:
    rid = request.headers.get("x-request-id")
    if rid is None or not valid_request_id(rid):
        rid = gw.new_request_id()
    return Exchange(
        id=rid,
        endpoint=endpoint,
        snap=gw.store.current,  # read once: the whole request runs on this snapshot
        started=time.monotonic(),
        client_headers=request.headers,
    )


async def receive(request: web.Request, ex: Exchange) -> None:
    """Read the body within the snapshot's cap, peek at what routing needs, find the route."""
    ex.body = await _read_body(request, ex.snap.server.max_body_bytes)
    ex.peek = pk = peek(ex.body)
    route = ex.snap.routes.get(pk.model)
    if route is None:
        raise model_not_found(pk.model)
    ex.route = route
    ex.forward_headers = forward_headers(ex.client_headers, ex.id)


def admit(gw: Gateway, ex: Exchange) -> None:
    """Who may send this, and may they now: keys, rate limits, budget reservations.

    Nothing to check yet: every request is admitted (governance adds its checks here).
    """


def lookup(gw: Gateway, ex: Exchange) -> web.StreamResponse | None:
    """An answer already known for this exact request (the response cache); None: ask upstream.

    No cache yet: always None.
    """
    return None


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


async def respond(
    request: web.Request, gw: Gateway, ex: Exchange, win: Attempt
) -> web.StreamResponse:
    """Answer with the winning attempt: a whole body, or a relayed stream (after the commit)."""
    with win:
        reply = win.reply
        assert reply is not None
        headers = _gateway_headers(ex, gw.drain.draining)
        headers.update(passed_response_headers(reply.headers))
        if not ex.stream or reply.status != 200:
            headers["Content-Type"] = reply.headers.get("Content-Type", "application/json")
            if reply.status < 300:
                ex.usage = win.provider.usage(reply.first)
            ex.status = reply.status
            body = win.provider.answer(reply.status, reply.first, ex)
            return web.Response(status=reply.status, body=body, headers=headers)
        return await _relay(request, gw, ex, win, headers)


async def _relay(
    request: web.Request, gw: Gateway, ex: Exchange, win: Attempt, headers: dict[str, str]
) -> web.StreamResponse:
    reply = win.reply
    assert reply is not None
    headers.update(STREAM_HEADERS)
    out = web.StreamResponse(status=200, headers=headers)
    stream_filter = win.provider.stream(win.upstream, ex)
    relay = StreamRelay(
        reply, win.choice.member.timeouts, stream_filter, stream_error_maker(ex.endpoint)
    )
    gw.drain.streams.add(relay)
    try:
        await out.prepare(request)  # the commit point: no failover after this line
        ex.status = 200
        await relay.run(out)
    except asyncio.CancelledError:
        ex.failure = FailureKind.CLIENT_GONE
        ex.status = 499
        raise
    except ConnectionError:
        # The client went away while we wrote: nothing more to send, and no server error.
        ex.failure = FailureKind.CLIENT_GONE
        ex.status = 499
        win.end(close=True)
        return out
    finally:
        gw.drain.streams.discard(relay)
        ex.usage = stream_filter.usage
    if relay.failure is not None:
        win.broke(relay.failure)
    return out


def settle(ex: Exchange) -> None:
    """Exactly once per request, whatever happened: the access line (later metrics, ledger)."""
    if ex.snap.server.access_log:
        access.write(ex)


def _gateway_headers(ex: Exchange, draining: bool) -> dict[str, str]:
    headers = {"x-request-id": ex.id, "x-gateway-attempts": str(ex.attempts)}
    if ex.upstream is not None:
        headers["x-gateway-upstream"] = ex.upstream
    if draining:
        headers["Connection"] = "close"
    return headers


def _error_response(exc: GatewayError, ex: Exchange, draining: bool) -> web.Response:
    headers = exc.headers()
    headers.update(_gateway_headers(ex, draining))
    return web.Response(status=exc.status, body=error_body(exc, ex.endpoint), headers=headers)


async def _read_body(request: web.Request, limit: int) -> bytes:
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit)
    parts: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)
