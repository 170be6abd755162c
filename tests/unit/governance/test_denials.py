"""Gateway-made 401, 403 and 429s: OpenAI shape, retry advice and rate-limit headers."""

from __future__ import annotations

import orjson

from proxy.governance.denials import model_not_allowed, refused, unauthorized
from proxy.governance.reservations import Quota, Refusal


def test_401_and_403_will_not_heal() -> None:
    for err, status, code in (
        (unauthorized(missing=True), 401, "invalid_api_key"),
        (unauthorized(missing=False), 401, "invalid_api_key"),
        (model_not_allowed("chat"), 403, "model_not_allowed"),
    ):
        assert err.status == status
        assert orjson.loads(err.body())["error"]["code"] == code
        assert err.headers()["x-should-retry"] == "false"


def test_rate_limit_429_carries_openai_headers() -> None:
    r = Refusal(
        "key:k",
        "rpm",
        1.5,
        (Quota("requests", 60, 0, 20.2), Quota("tokens", 1000, 400, 20.2)),
    )
    h = refused(r, "key k").headers()
    assert h["Retry-After"] == "2"
    assert h["retry-after-ms"] == "1500"
    assert h["x-ratelimit-limit-requests"] == "60"
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert h["x-ratelimit-reset-requests"] == "21s"
    assert h["x-ratelimit-remaining-tokens"] == "400"
    assert "x-should-retry" not in h


def test_spent_budget_is_429_budget_exceeded_without_retry() -> None:
    err = refused(Refusal("team:t", "usd_per_month", 86400.0, ()), "team t")
    assert err.status == 429
    body = orjson.loads(err.body())["error"]
    assert body["code"] == "budget_exceeded"
    assert "team t" in body["message"]
    assert err.headers()["x-should-retry"] == "false"
    assert err.headers()["Retry-After"] == "86400"
    total = refused(Refusal("key:k", "usd_total", None, ()), "key k").headers()
    assert "Retry-After" not in total
