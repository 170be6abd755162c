"""`POST /v1/messages/count_tokens` on routes whose upstreams cannot count: an estimate."""

from __future__ import annotations

import orjson
from aiohttp import web

from proxy.config.values import Endpoint
from proxy.core.exchange import Exchange
from proxy.providers.catalog import PROVIDERS
from proxy.providers.token_estimate import estimate_input_tokens


def estimate(ex: Exchange) -> web.Response | None:
    """The gateway's own count when no upstream of the route can count; None: ask upstream."""
    route = ex.route
    if ex.endpoint is not Endpoint.COUNT_TOKENS or route is None:
        return None
    for tier in route.tiers:
        for member in tier.members:
            if PROVIDERS[member.upstream.provider].supports(member.upstream, Endpoint.COUNT_TOKENS):
                return None
    ex.status = 200
    body = orjson.dumps({"input_tokens": estimate_input_tokens(ex.body)})
    headers = {"x-request-id": ex.id, "x-gateway-token-count": "estimated"}
    return web.Response(body=body, content_type="application/json", headers=headers)
