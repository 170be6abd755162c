"""HTTP handlers: the proxied OpenAI endpoints, the model list, and health probes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from proxy import failover, logs
from proxy.body import peek, too_large
from proxy.config import Endpoint
from proxy.errors import FailureKind, GatewayError, model_not_found
from proxy.failover import Trace, Winner
from proxy.headers import passed_response_headers, valid_request_id
from proxy.relay import STREAM_HEADERS, StreamRelay
from proxy.runtime import Gateway
from proxy.usage import from_body

GATEWAY = web.AppKey("gateway", Gateway)

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
        return await _proxy(request, endpoint)

    return handle


async def _proxy(request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    snap = gw.store.current
    started = time.monotonic()
    rid = request.headers.get("x-request-id")
    if not valid_request_id(rid):
        rid = gw.new_request_id()
    assert rid is not None
    trace = Trace()
    log: dict[str, object] = {"request_id": rid, "endpoint": endpoint.name.lower()}
    status = 500
    gw.drain.enter()
    try:
        body = await _read_body(request, snap.server.max_body_bytes)
        pk = peek(body)
        log["stream"] = pk.stream
        route = snap.routes.get(pk.model)
        if route is None:
            raise model_not_found(pk.model)
        log["route"] = route.name
        call = failover.Call(
            snap=snap,
            route=route,
            endpoint=endpoint,
            body=body,
            peek=pk,
            client_headers=request.headers,
            request_id=rid,
            trace=trace,
        )
        resp = await _forward(request, gw, call, log)
        status = 499 if log.get("failure") == FailureKind.CLIENT_GONE else resp.status
        return resp
    except GatewayError as exc:
        status = exc.status
        return _error_response(exc, rid, trace, gw.drain.draining)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task in gw.drain.cut:
            # Cancelled by the drain deadline, not by the client: say so, with a 503.
            gw.drain.cut.discard(task)
            task.uncancel()
            status = 503
            return _error_response(_SHUTTING_DOWN, rid, trace, draining=True)
        status = 499
        log["failure"] = FailureKind.CLIENT_GONE
        raise
    except Exception as exc:  # noqa: BLE001 - last resort: an OpenAI-shaped 500, never a trace
        logs.error("internal_error", request_id=rid, error=type(exc).__name__)
        status = 500
        return _error_response(_INTERNAL, rid, trace, gw.drain.draining)
    finally:
        gw.drain.leave()
        if snap.server.access_log:
            failure = log.pop("failure", trace.failure)
            logs.access(
                **log,
                status=status,
                upstream=trace.upstream,
                attempts=trace.attempts,
                failure=failure,
                ttfb_ms=None if trace.ttfb_s is None else round(trace.ttfb_s * 1000, 2),
                duration_ms=round((time.monotonic() - started) * 1000, 2),
            )


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


async def _forward(
    request: web.Request, gw: Gateway, call: failover.Call, log: dict[str, object]
) -> web.StreamResponse:
    task: asyncio.Task[object] | None = asyncio.current_task()
    if task is not None:
        gw.drain.waiting.add(task)
    try:
        win = await failover.run(gw.session, gw.balancer, call)
    finally:
        if task is not None:
            gw.drain.waiting.discard(task)
    trace, rid, pk = call.trace, call.request_id, call.peek
    try:
        headers = _gateway_headers(rid, trace, gw.drain.draining)
        upstream = win.opened.response
        headers.update(passed_response_headers(upstream.headers))
        if not pk.stream or win.opened.failure is not None or upstream.status != 200:
            headers["Content-Type"] = upstream.headers.get("Content-Type", "application/json")
            _note_usage_json(win, log)
            return web.Response(status=upstream.status, body=win.opened.first, headers=headers)
        return await _relay(request, gw, call, win, headers, log)
    finally:
        win.choice.stats.release()
        win.opened.response.release()


async def _relay(
    request: web.Request,
    gw: Gateway,
    call: failover.Call,
    win: Winner,
    headers: dict[str, str],
    log: dict[str, object],
) -> web.StreamResponse:
    trace = call.trace
    headers.update(STREAM_HEADERS)
    out = web.StreamResponse(status=200, headers=headers)
    relay = StreamRelay(
        win.opened.response,
        win.choice.member.timeouts,
        strip_usage=call.strip_usage(win.choice.member.upstream),
    )
    gw.drain.streams.add(relay)
    try:
        await out.prepare(request)  # the commit point: no failover after this line
        await relay.run(out, win.opened.first)
    except asyncio.CancelledError:
        log["failure"] = FailureKind.CLIENT_GONE
        win.opened.response.close()
        raise
    except ConnectionError:
        # The client went away while we wrote: nothing more to send, and no server error.
        log["failure"] = FailureKind.CLIENT_GONE
        win.opened.response.close()
        return out
    finally:
        gw.drain.streams.discard(relay)
        if relay.usage is not None:
            log["tokens_in"] = relay.usage.tokens_in
            log["tokens_out"] = relay.usage.tokens_out
    if relay.failure is not None:
        trace.failure = relay.failure
        if relay.failure is not FailureKind.SHUTDOWN:
            st = win.choice.stats
            st.record_failure(time.monotonic(), gw.balancer.rng)
    return out


def _note_usage_json(win: Winner, log: dict[str, object]) -> None:
    usage = from_body(win.opened.first) if win.opened.failure is None else None
    if usage is not None:
        log["tokens_in"] = usage.tokens_in
        log["tokens_out"] = usage.tokens_out


def _gateway_headers(rid: str, trace: Trace, draining: bool) -> dict[str, str]:
    headers = {"x-request-id": rid, "x-gateway-attempts": str(trace.attempts)}
    if trace.upstream is not None:
        headers["x-gateway-upstream"] = trace.upstream
    if draining:
        headers["Connection"] = "close"
    return headers


def _error_response(exc: GatewayError, rid: str, trace: Trace, draining: bool) -> web.Response:
    headers = exc.headers()
    headers.update(_gateway_headers(rid, trace, draining))
    return web.Response(status=exc.status, body=exc.body(), headers=headers)


async def models(request: web.Request) -> web.Response:
    snap = request.app[GATEWAY].store.current
    created = int(time.time())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "llm-gateway"}
        for name in snap.routes
    ]
    return web.Response(
        body=orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. 503 while draining so load balancers move away."""
    if request.app[GATEWAY].drain.draining:
        return _json(503, {"status": "draining"})
    return _json(200, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: a config is loaded and at least one upstream is selectable."""
    gw = request.app[GATEWAY]
    if gw.drain.draining:
        return _json(503, {"status": "draining"})
    now = time.monotonic()
    snap = gw.store.current
    states = {
        name: gw.balancer.registry.get(up).health(now).value for name, up in snap.upstreams.items()
    }
    ok = any(s == "healthy" for s in states.values())
    body = {
        "status": "ready" if ok else "degraded",
        "generation": gw.store.generation,
        "upstreams": states,
    }
    return _json(200 if ok else 503, body)


def _json(status: int, obj: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json")
