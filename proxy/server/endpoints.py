"""The gateway's own endpoints: the model list, liveness and readiness."""

from __future__ import annotations

import ipaddress
import time

import orjson
from aiohttp import web

from proxy.core.errors import model_not_found
from proxy.routing.health_report import selectable, upstream_states
from proxy.server.runtime import Gateway

MODEL_PREFIX = "/v1/models/"
"""`GET /v1/models/{id}`: the id is the rest of the (decoded) path."""


async def models(request: web.BaseRequest, gw: Gateway) -> web.Response:
    """`GET /v1/models`: the routes as the OpenAI model list; with keys, only those the
    caller's key may use."""
    key = gw.governor.key_of(request.headers, time.time())
    created = int(time.time())
    data = [
        _model(name, created)
        for name in gw.store.current.routes
        if key is None or key.routes is None or name in key.routes
    ]
    return _json(200, {"object": "list", "data": data})


async def model(request: web.BaseRequest, gw: Gateway) -> web.Response:
    """`GET /v1/models/{id}` (the SDKs' `models.retrieve`): one route, or 404 model_not_found
    (also for a route the caller's key may not use: its existence is not disclosed)."""
    key = gw.governor.key_of(request.headers, time.time())
    name = request.path[len(MODEL_PREFIX) :]
    allowed = key is None or key.routes is None or name in key.routes
    if name not in gw.store.current.routes or not allowed:
        raise model_not_found(name)
    return _json(200, _model(name, int(time.time())))


def _model(name: str, created: int) -> dict[str, object]:
    return {"id": name, "object": "model", "created": created, "owned_by": "llm-gateway"}


async def healthz(request: web.BaseRequest, gw: Gateway) -> web.Response:
    """Liveness: the process answers. 503 while draining so load balancers move away."""
    if gw.drain.draining:
        return _json(503, {"status": "draining"})
    return _json(200, {"status": "ok"})


async def readyz(request: web.BaseRequest, gw: Gateway) -> web.Response:
    """Readiness: a config is loaded and at least one upstream is selectable.

    Everyone learns ready or not; who may see each upstream's state is `[server] readyz_detail`.
    """
    if gw.drain.draining:
        return _json(503, {"status": "draining"})
    snap = gw.store.current
    states = upstream_states(snap, gw.balancer.registry, time.monotonic(), time.time())
    ok = selectable(states)
    body: dict[str, object] = {"status": "ready" if ok else "degraded"}
    if shows_detail(snap.server.readyz_detail, request.remote):
        body["generation"] = gw.store.generation
        body["upstreams"] = states
    return _json(200 if ok else 503, body)


def shows_detail(policy: str, remote: str | None) -> bool:
    """`always`, `never`, or `loopback`: only to clients on this machine."""
    if policy != "loopback":
        return policy == "always"
    if remote is None:
        return False
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _json(status: int, obj: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(obj), content_type="application/json")
