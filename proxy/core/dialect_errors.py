"""Error bodies and end-of-stream error events in the client's dialect (OpenAI or Messages)."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from proxy.config.values import Endpoint
from proxy.core.errors import GatewayError, stream_error_event

StreamErrorMaker = Callable[[str, str, str], bytes]
"""(message, type, code) -> the bytes of the event that ends a failed stream."""

ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
"""Status -> Messages `error.type`, from Anthropic's error docs (503 read as overloaded)."""

ANTHROPIC_ENDPOINTS = frozenset({Endpoint.MESSAGES, Endpoint.COUNT_TOKENS})
"""Endpoints whose clients speak Messages, so errors go back in its shape."""


def anthropic_type(status: int) -> str:
    if status in ANTHROPIC_TYPES:
        return ANTHROPIC_TYPES[status]
    return "api_error" if status >= 500 else "invalid_request_error"


def anthropic_error(status: int, message: str, kind: str | None = None) -> bytes:
    """`{"type":"error","error":{"type","message"}}` as the Messages API sends it."""
    err = {"type": kind or anthropic_type(status), "message": message}
    return orjson.dumps({"type": "error", "error": err})


def error_body(exc: GatewayError, endpoint: Endpoint) -> bytes:
    """The body of a gateway-made error in the dialect of the endpoint the client called."""
    if endpoint in ANTHROPIC_ENDPOINTS:
        return anthropic_error(exc.status, exc.message)
    return exc.body()


def anthropic_stream_error(message: str, type_: str, code: str) -> bytes:
    """The Messages stream's own error event (the Anthropic SDK raises on it)."""
    kind = "overloaded_error" if code == "server_shutting_down" else "api_error"
    data = orjson.dumps({"type": "error", "error": {"type": kind, "message": message}})
    return b"event: error\ndata: " + data + b"\n\n"


def stream_error_maker(endpoint: Endpoint) -> StreamErrorMaker:
    """How a committed stream to this endpoint's client ends on a failure."""
    return anthropic_stream_error if endpoint in ANTHROPIC_ENDPOINTS else stream_error_event
