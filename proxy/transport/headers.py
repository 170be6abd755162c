"""Which headers cross the gateway: an allow-list toward upstreams, a short list back to clients."""

from __future__ import annotations

from collections.abc import Mapping

FORWARDED_REQUEST_HEADERS = frozenset({"accept", "user-agent", "openai-beta"})
"""Client headers passed upstream. An allow-list, so hop-by-hop headers, client credentials
(Authorization, x-api-key, api-key, x-goog-api-key), cookies and anything a `Connection`
header nominates can never reach a provider."""

PASSED_RESPONSE_HEADERS = frozenset({"openai-processing-ms", "openai-version"})
"""Upstream response headers worth showing the client; framing and the provider's rate-limit
headers (which describe the gateway's account, not the client's) stay behind."""


def forward_headers(client: Mapping[str, str], request_id: str) -> dict[str, str]:
    """Headers every attempt sends: allowed client headers, then gateway-owned ones on top.

    A provider adds its own (credential, dialect headers) per upstream.

    `client` must look names up case-insensitively (aiohttp's CIMultiDictProxy does).
    """
    out = {name: value for name in FORWARDED_REQUEST_HEADERS if (value := client.get(name))}
    out["Content-Type"] = "application/json"
    # Bodies are relayed byte for byte (and observed for usage), so ask for them uncompressed.
    out["Accept-Encoding"] = "identity"
    out["X-Request-Id"] = request_id
    return out


def passed_response_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    """`upstream` must look names up case-insensitively (aiohttp's response headers do)."""
    out = {name: value for name in PASSED_RESPONSE_HEADERS if (value := upstream.get(name))}
    rid = upstream.get("x-request-id")
    if rid:
        out["x-upstream-request-id"] = rid
    return out


def valid_request_id(value: str | None) -> bool:
    """A client-sent x-request-id is kept only if it is short printable ASCII."""
    if not value or len(value) > 128:
        return False
    return all(33 <= ord(ch) <= 126 for ch in value)
