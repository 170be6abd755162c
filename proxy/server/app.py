"""The public listener's request handler: method and path looked up in two dicts, no router."""

from __future__ import annotations

from aiohttp import hdrs, web

from proxy.config.values import Endpoint
from proxy.core.errors import GatewayError
from proxy.server.endpoints import MODEL_PREFIX, healthz, model, models, readyz
from proxy.server.expect import expect_continue
from proxy.server.own import Handler, error_response, own
from proxy.server.pipeline import proxy_handler
from proxy.server.runtime import Gateway

PROXIED = {
    "/v1/chat/completions": Endpoint.CHAT,
    "/v1/completions": Endpoint.COMPLETIONS,
    "/v1/embeddings": Endpoint.EMBEDDINGS,
    "/v1/responses": Endpoint.RESPONSES,
    "/v1/messages": Endpoint.MESSAGES,
    "/v1/messages/count_tokens": Endpoint.COUNT_TOKENS,
}

GETS = frozenset({"/v1/models", "/healthz", "/readyz"})


class Dispatch:
    """aiohttp's low-level `web.Server` handler for the public listener.

    aiohttp's `Application` (router, match info, middleware chain, app signals) cost about
    40k instructions per request (counted with callgrind) for a route table that is a handful
    of fixed paths; here a POST is one dict lookup. GET and HEAD are answered alike, as
    aiohttp's `add_get` does; anything else is the OpenAI-shaped 404 or 405.
    """

    __slots__ = ("_gets", "_model", "_other", "_posts", "gateway")

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._posts = {path: proxy_handler(ep, gateway) for path, ep in PROXIED.items()}
        self._gets: dict[str, Handler] = {
            "/v1/models": own(models, gateway, "models"),
            "/healthz": own(healthz, gateway, None, logged=False),
            "/readyz": own(readyz, gateway, None, logged=False),
        }
        self._model = own(model, gateway, "models")
        self._other = own(fallback, gateway, None)

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        method, path = request.method, request.path
        if method == "POST":
            handler = self._posts.get(path)
            if handler is not None:
                if hdrs.EXPECT in request.headers:
                    refused = await expect_continue(request, self.gateway)
                    await request.writer.drain()
                    if refused is not None:
                        return refused
                return await handler(request)
        elif method in ("GET", "HEAD"):
            found = self._gets.get(path)
            if found is not None:
                return await found(request)
            if path.startswith(MODEL_PREFIX) and len(path) > len(MODEL_PREFIX):
                return await self._model(request)
        return await self._other(request)


async def fallback(request: web.BaseRequest, gw: Gateway) -> web.Response:
    """Unknown paths and wrong methods, answered in the OpenAI error shape."""
    path = request.path
    if path in PROXIED or path in GETS or path.startswith(MODEL_PREFIX):
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
