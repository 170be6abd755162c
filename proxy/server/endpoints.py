"""The gateway's own endpoints: the model list, liveness and readiness."""

from __future__ import annotations

import time

import orjson
from aiohttp import web

from proxy.core.errors import GatewayError
from proxy.server.runtime import GATEWAY


async def models(request: web.Request) -> web.Response:
    """The routes, as OpenAI's model list; with keys, only those the caller's key may use."""
    gw = request.app[GATEWAY]
    snap = gw.store.current
    created = int(time.time())
    try:
        key = gw.governor.key_of(request.headers, time.time())
    except GatewayError as exc:
        return web.Response(status=exc.status, body=exc.body(), headers=exc.headers())
    data = [
        {"id": name, "object": "model", "created": created, "owned_by": "llm-gateway"}
        for name in snap.routes
        if key is None or key.routes is None or name in key.routes
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
