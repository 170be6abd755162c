"""The admin listener: /metrics, /admin/status, runtime drain and undrain, behind a token."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import orjson
from aiohttp import web

from proxy.core.errors import GatewayError
from proxy.ops import logs
from proxy.ops.looplag import LoopLag
from proxy.ops.metrics import CONTENT_TYPE, LiveCollector, Metrics, ServiceRow, UpstreamRow
from proxy.ops.recent import RecentTraces
from proxy.routing.balancer import Balancer
from proxy.server.adminauth import allowed
from proxy.server.adminstatus import status
from proxy.server.edge import Edge
from proxy.server.healthchecks import HealthChecks
from proxy.server.own import error_response
from proxy.server.reload import Reloader
from proxy.server.runtime import ConfigStore

_UNAUTHORIZED = GatewayError(
    401,
    "The admin API needs `Authorization: Bearer <admin token>` ([admin] token).",
    type_="invalid_request_error",
    code="admin_unauthorized",
    should_retry=False,
)


@dataclass(slots=True)
class AdminState:
    """What the admin endpoints read and change."""

    store: ConfigStore
    balancer: Balancer
    reloader: Reloader
    metrics: Metrics
    lag: LoopLag
    recent: RecentTraces | None = None
    edge: Edge | None = None
    health: HealthChecks | None = None

    def upstream_rows(self) -> Iterator[UpstreamRow]:
        now = time.monotonic()
        registry = self.balancer.registry
        for up in self.store.current.upstreams.values():
            st = registry.get(up)
            yield UpstreamRow(up.name, st.health(now).value, st.inflight)

    def service_row(self) -> ServiceRow:
        r, e = self.reloader, self.edge
        if e is None:
            return ServiceRow(self.store.generation, r.successes, r.failures, self.lag.lag_s)
        return ServiceRow(
            self.store.generation,
            r.successes,
            r.failures,
            self.lag.lag_s,
            e.connections,
            e.refused,
            e.timed_out,
        )


ADMIN = web.AppKey("admin", AdminState)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_admin_app(state: AdminState) -> web.Application:
    state.metrics.scraped.register(LiveCollector(state.upstream_rows, state.service_row))
    app = web.Application(client_max_size=1 << 16)
    app[ADMIN] = state
    app.router.add_get("/metrics", _guard(metrics, metrics=True))
    app.router.add_get("/admin/status", _guard(admin_status))
    app.router.add_post("/admin/upstreams/{name}/drain", _guard(drain))
    app.router.add_post("/admin/upstreams/{name}/undrain", _guard(undrain))
    app.router.add_get("/admin/requests/{id}", _guard(request_trace))
    app.router.add_route("*", "/{tail:.*}", _guard(not_found))
    return app


def _guard(handler: Handler, *, metrics: bool = False) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        admin = request.app[ADMIN].store.current.admin
        auth = request.headers.get("Authorization")
        if admin is None or not allowed(admin, auth, request.remote, metrics=metrics):
            return error_response(_UNAUTHORIZED, **{"WWW-Authenticate": "Bearer"})
        try:
            return await handler(request)
        except GatewayError as err:
            return error_response(err)

    return handle


async def metrics(request: web.Request) -> web.Response:
    body = request.app[ADMIN].metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def admin_status(request: web.Request) -> web.Response:
    st = request.app[ADMIN]
    config = {
        "generation": st.store.generation,
        "sha256": st.reloader.digest,
        "last_reload": st.reloader.last or None,
    }
    now = time.monotonic()
    doc = status(st.store.current, st.balancer.registry, now, time.time(), config)
    upstreams = doc["upstreams"]
    if st.health is not None and isinstance(upstreams, dict):
        for name, probe in st.health.report(now).items():
            if name in upstreams:
                upstreams[name]["health_check"] = probe
    return _json(200, doc)


async def drain(request: web.Request) -> web.Response:
    return _set_drained(request, drained=True)


async def undrain(request: web.Request) -> web.Response:
    return _set_drained(request, drained=False)


def _set_drained(request: web.Request, *, drained: bool) -> web.Response:
    st = request.app[ADMIN]
    name = request.match_info["name"]
    up = st.store.current.upstreams.get(name)
    if up is None:
        raise GatewayError(
            404, f"Unknown upstream {name[:200]}.", code="upstream_not_found", should_retry=False
        )
    stats = st.balancer.registry.current().get(name)
    if stats is None:  # defensive: the registry always holds the running snapshot's upstreams
        stats = st.balancer.registry.get(up)
    stats.drained = drained
    logs.event("upstream_drained" if drained else "upstream_undrained", upstream=name)
    return _json(200, {"upstream": name, "drained": drained})


async def request_trace(request: web.Request) -> web.Response:
    """The routing trace of a recent request (the last 1000 are kept)."""
    recent = request.app[ADMIN].recent
    rid = request.match_info["id"]
    doc = None if recent is None else recent.get(rid)
    if doc is None:
        raise GatewayError(
            404,
            f"No recent request {rid[:200]} (only the last ones are kept).",
            code="request_not_found",
            should_retry=False,
        )
    return _json(200, doc)


async def not_found(request: web.Request) -> web.Response:
    raise GatewayError(
        404, f"Unknown admin path {request.path[:200]}.", code="not_found", should_retry=False
    )


def _json(status_code: int, body: object) -> web.Response:
    return web.Response(
        status=status_code,
        body=orjson.dumps(body),
        headers={"Content-Type": "application/json", "Cache-Control": "no-store"},
    )
