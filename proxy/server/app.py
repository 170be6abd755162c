"""Build the aiohttp Application: the route table and the shared gateway state it serves."""

from __future__ import annotations

from aiohttp import web

from proxy.config.values import Endpoint
from proxy.core.errors import GatewayError
from proxy.server.endpoints import healthz, model, models, readyz
from proxy.server.expect import expect_continue
from proxy.server.own import error_response, own
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

GETS = frozenset({"/v1/models", "/healthz", "/readyz"})


def build_app(gateway: Gateway) -> web.Application:
    # Bodies are read by the handler against the live snapshot's limit, not aiohttp's.
    headers = {"max_field_size": 16384, "max_headers": gateway.store.current.server.max_headers}
    app = web.Application(client_max_size=2**62, handler_args=headers)
    app[GATEWAY] = gateway
    for path, endpoint in PROXIED.items():
        app.router.add_post(path, proxy_handler(endpoint), expect_handler=expect_continue)
    app.router.add_get("/v1/models", own(models, "models"))
    app.router.add_get("/v1/models/{model:.+}", own(model, "models"))
    app.router.add_get("/healthz", own(healthz, None, logged=False))
    app.router.add_get("/readyz", own(readyz, None, logged=False))
    app.router.add_route("*", "/{tail:.*}", own(fallback, None))
    return app


async def fallback(request: web.Request) -> web.Response:
    """Unknown paths and wrong methods, answered in the OpenAI error shape."""
    path = request.path
    if path in PROXIED or path in GETS or path.startswith("/v1/models/"):
        allowed = "POST" if path in PROXIED else "GET"
        err = GatewayError(
            405,
            f"Method {request.method} is not allowed on {path[:200]}.",
            code="method_not_allowed",
            should_retry=False,
        )
        return error_response(err, Allow=allowed)
    err = GatewayError(404, f"Unknown path {path[:200]}.", code="not_found", should_retry=False)
    return error_response(err)
