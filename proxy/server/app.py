"""Build the aiohttp Application: the route table and the shared gateway state it serves."""

from __future__ import annotations

from aiohttp import web

from proxy.config.values import Endpoint
from proxy.core.dialect_errors import error_body
from proxy.core.errors import GatewayError
from proxy.server.endpoints import healthz, models, readyz
from proxy.server.pipeline import proxy_handler
from proxy.server.runtime import GATEWAY, Gateway

PROXIED = {
    "/v1/chat/completions": Endpoint.CHAT,
    "/v1/completions": Endpoint.COMPLETIONS,
    "/v1/embeddings": Endpoint.EMBEDDINGS,
    "/v1/responses": Endpoint.RESPONSES,
    "/v1/messages": Endpoint.MESSAGES,
    "/v1/messages/count_tokens": Endpoint.COUNT_TOKENS,
}


def build_app(gateway: Gateway) -> web.Application:
    # Bodies are read by the handler against the live snapshot's limit, not aiohttp's.
    app = web.Application(client_max_size=2**62, handler_args={"max_field_size": 16384})
    app[GATEWAY] = gateway
    for path, endpoint in PROXIED.items():
        app.router.add_post(path, proxy_handler(endpoint))
    app.router.add_get("/v1/models", models)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_route("*", "/{tail:.*}", fallback)
    return app


async def fallback(request: web.Request) -> web.Response:
    """Unknown paths and wrong methods, answered in the OpenAI error shape."""
    path = request.path
    if path in PROXIED or path in ("/v1/models", "/healthz", "/readyz"):
        allowed = "POST" if path in PROXIED else "GET"
        err = GatewayError(
            405, f"Method {request.method} is not allowed on {path}.", code="method_not_allowed"
        )
        headers = err.headers()
        headers["Allow"] = allowed
        body = error_body(err, PROXIED.get(path, Endpoint.CHAT))
        return web.Response(status=405, body=body, headers=headers)
    err = GatewayError(404, f"Unknown path {path[:200]}.", code="not_found")
    return web.Response(status=404, body=err.body(), headers=err.headers())
