"""OpenAI-shaped errors the gateway answers: status, body, retry headers, and their makers."""

from __future__ import annotations

import math

import orjson

from proxy.core.failures import FailureKind


class GatewayError(Exception):
    """An error answered to the client as `{"error": {message, type, param, code}}`."""

    def __init__(  # noqa: PLR0913 - keyword-only fields of one OpenAI error
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
        should_retry: bool | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s
        self.should_retry = should_retry
        self.extra_headers = extra_headers

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.retry_after_s is not None:
            # Retry-After takes whole seconds (at least 1); retry-after-ms keeps the precision,
            # and both SDKs read it first.
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
            headers["retry-after-ms"] = str(max(1, round(self.retry_after_s * 1000)))
        if self.should_retry is not None:
            headers["x-should-retry"] = "true" if self.should_retry else "false"
        if self.extra_headers:
            headers.update(self.extra_headers)
        return headers


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def stream_error_event(message: str, type_: str, code: str) -> bytes:
    """The in-band error that ends a stream after the commit point (the OpenAI SDK raises on it)."""
    return b"data: " + error_body(message, type_, code) + b"\n\n"


def bad_request(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, code="invalid_request", param=param, should_retry=False)


def model_not_found(model: str) -> GatewayError:
    shown = model if len(model) <= 200 else model[:200] + "..."
    return GatewayError(
        404,
        f"The model `{shown}` does not exist or is not routed by this gateway.",
        code="model_not_found",
        param="model",
        should_retry=False,
    )


def exhausted(kind: FailureKind, status: int | None, retry_after_s: float | None) -> GatewayError:
    """The error a client gets when every attempt failed, named after the last cause."""
    if kind is FailureKind.RATE_LIMITED:
        return GatewayError(
            429,
            "Every upstream for this model is rate-limited; retry later.",
            type_="rate_limit_error",
            code="rate_limit_exceeded",
            retry_after_s=retry_after_s if retry_after_s is not None else 1.0,
        )
    if kind is FailureKind.TTFB_TIMEOUT:
        return GatewayError(
            504,
            "The upstream did not answer in time.",
            type_="server_error",
            code="upstream_timeout",
        )
    if kind is FailureKind.UPSTREAM_AUTH:
        return GatewayError(
            502,
            "The gateway's credential for the upstream was rejected.",
            type_="server_error",
            code="upstream_auth_failed",
            should_retry=False,  # a wrong key stays wrong until the operator changes it
        )
    if kind is FailureKind.RESPONSE_TOO_LARGE:
        return GatewayError(
            502,
            "The upstream's answer is larger than the gateway's limit (max_response_mb).",
            type_="server_error",
            code="upstream_response_too_large",
            should_retry=False,
        )
    if kind is FailureKind.UPSTREAM_5XX and status in (503, 529):  # 529: Anthropic overloaded
        return GatewayError(
            503,
            f"The upstream is overloaded or unavailable ({status}).",
            type_="server_error",
            code="upstream_unavailable",
            retry_after_s=retry_after_s if retry_after_s is not None else 1.0,
        )
    if kind is FailureKind.UPSTREAM_5XX:
        return GatewayError(
            502, f"The upstream failed ({status}).", type_="server_error", code="upstream_error"
        )
    return GatewayError(
        502,
        f"The upstream could not be reached ({kind.value}).",
        type_="server_error",
        code="upstream_unavailable",
    )


def no_upstream(retry_after_s: float, *, rate_limited: bool) -> GatewayError:
    """Nothing could be tried: every upstream is rate-limited (429) or ejected without panic."""
    if rate_limited:
        return exhausted(FailureKind.RATE_LIMITED, 429, retry_after_s)
    return GatewayError(
        503,
        "No healthy upstream for this model.",
        type_="server_error",
        code="no_healthy_upstream",
        retry_after_s=retry_after_s,
    )


def route_drained(route: str) -> GatewayError:
    """Every upstream of the route has weight 0: a config decision that retrying will not change."""
    return GatewayError(
        503,
        f"Every upstream of `{route}` is drained (weight 0) in the gateway's config.",
        type_="server_error",
        code="route_drained",
        param="model",
        should_retry=False,
    )


def previous_response_unavailable(reason: str, retry_after_s: float) -> GatewayError:
    """A Responses request continues a response whose upstream cannot answer it now: only that
    upstream (and credential) holds the stored response, any other would answer 404."""
    if reason == "not_in_route":
        return GatewayError(
            409,
            "The response named by previous_response_id was created by an upstream this model "
            "no longer routes to; start a new conversation without previous_response_id.",
            code="previous_response_unavailable",
            param="previous_response_id",
            should_retry=False,
        )
    return GatewayError(
        503,
        "The response named by previous_response_id is stored by an upstream that is "
        f"unavailable now ({reason.replace('_', ' ')}); retry later.",
        type_="server_error",
        code="previous_response_unavailable",
        param="previous_response_id",
        retry_after_s=retry_after_s,
    )


def too_large(limit: int) -> GatewayError:
    return GatewayError(
        413,
        f"The request body is larger than the gateway's limit of {limit} bytes.",
        code="request_too_large",
        should_retry=False,
    )


def unsupported(route: str, endpoint: str) -> GatewayError:
    """No upstream of the route speaks the endpoint the client called (say, embeddings)."""
    return GatewayError(
        400,
        f"The model `{route}` has no upstream that serves the {endpoint} endpoint.",
        code="unsupported_endpoint",
        param="model",
        should_retry=False,
    )
