"""The client-visible refusals of governance: 401, 403 and 429, OpenAI-shaped with SDK headers."""

from __future__ import annotations

from proxy.core.errors import GatewayError
from proxy.governance.reservations import Refusal
from proxy.governance.windows import ceil_s

_WHY = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "max_parallel": "parallel requests",
    "usd_per_day": "daily budget",
    "usd_per_month": "monthly budget",
    "usd_total": "total budget",
}


def unauthorized(missing: bool) -> GatewayError:
    """Missing, unknown, disabled or expired key: one answer, so keys cannot be probed."""
    message = (
        "Missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`."
        if missing
        else "Invalid API key: unknown, disabled or expired."
    )
    return GatewayError(
        401, message, type_="authentication_error", code="invalid_api_key", should_retry=False
    )


def model_not_allowed(route: str) -> GatewayError:
    shown = route if len(route) <= 200 else route[:200] + "..."
    return GatewayError(
        403,
        f"This API key may not use the model `{shown}`.",
        type_="permission_error",
        code="model_not_allowed",
        param="model",
        should_retry=False,
    )


def refused(r: Refusal, scope_label: str) -> GatewayError:
    """A 429 the SDKs act on: Retry-After and `x-ratelimit-*`; a spent budget says do not retry."""
    extra: dict[str, str] = {}
    for q in r.quotas:
        extra[f"x-ratelimit-limit-{q.kind}"] = str(q.limit)
        extra[f"x-ratelimit-remaining-{q.kind}"] = str(q.remaining)
        extra[f"x-ratelimit-reset-{q.kind}"] = f"{ceil_s(q.reset_s)}s"
    what = _WHY.get(r.limit, r.limit)
    if r.budget:
        return GatewayError(
            429,
            f"The {what} of {scope_label} is spent.",
            type_="insufficient_quota",
            code="budget_exceeded",
            retry_after_s=r.retry_after_s,
            should_retry=False,
            extra_headers=extra,
        )
    if r.retry_after_s is None:
        return GatewayError(
            429,
            f"The request alone exceeds the {what} limit of {scope_label}.",
            type_="rate_limit_error",
            code="rate_limit_exceeded",
            should_retry=False,
            extra_headers=extra,
        )
    return GatewayError(
        429,
        f"Rate limit of {scope_label} reached ({what}); retry later.",
        type_="rate_limit_error",
        code="rate_limit_exceeded",
        retry_after_s=r.retry_after_s,
        extra_headers=extra,
    )
