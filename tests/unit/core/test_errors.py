"""Tests for proxy.core.errors: status classification, OpenAI-shaped bodies, retry headers."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.core.errors import (
    GatewayError,
    bad_request,
    error_body,
    exhausted,
    model_not_found,
    no_upstream,
    route_drained,
    stream_error_event,
)
from proxy.core.failures import FAILOVER, PENALIZE, FailureKind, classify_status

# --- classify_status ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 206, 299])
def test_success_is_none(status: int) -> None:
    assert classify_status(status) is None


@pytest.mark.parametrize("status", [300, 301, 302, 304, 307, 308])
def test_redirect_is_a_failure(status: int) -> None:
    assert classify_status(status) is FailureKind.UPSTREAM_5XX


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, FailureKind.CLIENT_ERROR),
        (404, FailureKind.CLIENT_ERROR),
        (405, FailureKind.CLIENT_ERROR),
        (413, FailureKind.CLIENT_ERROR),
        (415, FailureKind.CLIENT_ERROR),
        (422, FailureKind.CLIENT_ERROR),
        (401, FailureKind.UPSTREAM_AUTH),
        (403, FailureKind.UPSTREAM_AUTH),
        (408, FailureKind.UPSTREAM_5XX),
        (409, FailureKind.UPSTREAM_5XX),
        (429, FailureKind.RATE_LIMITED),
        (500, FailureKind.UPSTREAM_5XX),
        (502, FailureKind.UPSTREAM_5XX),
        (503, FailureKind.UPSTREAM_5XX),
        (504, FailureKind.UPSTREAM_5XX),
        (529, FailureKind.UPSTREAM_5XX),
        (599, FailureKind.UPSTREAM_5XX),
    ],
)
def test_classify_status_table(status: int, kind: FailureKind) -> None:
    assert classify_status(status) is kind


@given(st.integers(min_value=100, max_value=599))
def test_classify_status_is_total_and_consistent(status: int) -> None:
    kind = classify_status(status)
    if 200 <= status < 300:
        assert kind is None
    elif status >= 500:
        assert kind is FailureKind.UPSTREAM_5XX
    elif 400 <= status < 500 and status not in (401, 403, 408, 409, 429):
        assert kind is FailureKind.CLIENT_ERROR


def test_failover_and_penalize_sets() -> None:
    assert FailureKind.CLIENT_ERROR not in FAILOVER
    assert FailureKind.CLIENT_ERROR not in PENALIZE
    assert FailureKind.RATE_LIMITED in FAILOVER
    assert FailureKind.RATE_LIMITED not in PENALIZE
    assert FailureKind.CLIENT_GONE not in PENALIZE
    assert FailureKind.STREAM_BROKEN not in FAILOVER  # after the commit point
    assert FailureKind.STREAM_BROKEN in PENALIZE
    assert {FailureKind.CONNECT, FailureKind.RESET, FailureKind.TTFB_TIMEOUT} <= FAILOVER


# --- GatewayError ----------------------------------------------------------------------------------


def test_body_has_exactly_four_keys() -> None:
    err = GatewayError(418, "short and stout", type_="teapot_error", code="teapot", param="x")
    payload = orjson.loads(err.body())
    assert list(payload) == ["error"]
    assert payload["error"] == {
        "message": "short and stout",
        "type": "teapot_error",
        "param": "x",
        "code": "teapot",
    }


def test_defaults_and_null_fields() -> None:
    err = GatewayError(400, "bad")
    assert orjson.loads(err.body()) == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": None, "code": None}
    }
    assert err.headers() == {"Content-Type": "application/json"}
    assert str(err) == "bad"


@pytest.mark.parametrize(
    ("retry_after_s", "seconds", "millis"),
    [
        (0.0, "1", "1"),
        (0.0001, "1", "1"),
        (0.2, "1", "200"),
        (1.0, "1", "1000"),
        (1.001, "2", "1001"),
        (2.5, "3", "2500"),
        (59.9994, "60", "59999"),
        (-3.0, "1", "1"),
    ],
)
def test_retry_after_headers(retry_after_s: float, seconds: str, millis: str) -> None:
    headers = GatewayError(429, "slow down", retry_after_s=retry_after_s).headers()
    assert headers["Retry-After"] == seconds
    assert headers["retry-after-ms"] == millis


@given(st.floats(min_value=0.0, max_value=1e6, allow_nan=False))
def test_retry_after_is_whole_seconds_at_least_one(retry_after_s: float) -> None:
    headers = GatewayError(503, "x", retry_after_s=retry_after_s).headers()
    seconds = int(headers["Retry-After"])
    assert headers["Retry-After"] == str(seconds)
    assert seconds >= 1
    assert seconds >= retry_after_s
    assert seconds - retry_after_s < 1.0 or retry_after_s < 1.0
    millis = int(headers["retry-after-ms"])
    assert millis >= 1
    assert abs(millis - max(1.0, retry_after_s * 1000)) <= 1.0


@pytest.mark.parametrize(("flag", "value"), [(True, "true"), (False, "false")])
def test_should_retry_header(flag: bool, value: str) -> None:
    assert GatewayError(400, "x", should_retry=flag).headers()["x-should-retry"] == value


def test_bad_request() -> None:
    err = bad_request("nope", "messages")
    assert (err.status, err.code, err.param, err.type) == (
        400,
        "invalid_request",
        "messages",
        "invalid_request_error",
    )
    assert err.headers()["x-should-retry"] == "false"


def test_model_not_found_truncates_long_names() -> None:
    err = model_not_found("m" * 500)
    assert err.status == 404
    assert err.code == "model_not_found"
    assert err.param == "model"
    assert "m" * 200 + "..." in err.message
    assert "m" * 201 not in err.message
    assert "`gpt-x`" in model_not_found("gpt-x").message


# --- exhausted / no_upstream ---------------------------------------------------------------------


def test_exhausted_rate_limited_is_429_with_retry_after() -> None:
    err = exhausted(FailureKind.RATE_LIMITED, 429, 4.2)
    assert err.status == 429
    assert err.type == "rate_limit_error"
    assert err.code == "rate_limit_exceeded"
    assert err.headers()["Retry-After"] == "5"
    assert err.headers()["retry-after-ms"] == "4200"
    default = exhausted(FailureKind.RATE_LIMITED, 429, None)
    assert default.headers()["Retry-After"] == "1"


def test_exhausted_ttfb_timeout_is_504() -> None:
    err = exhausted(FailureKind.TTFB_TIMEOUT, None, None)
    assert (err.status, err.code, err.type) == (504, "upstream_timeout", "server_error")
    assert "Retry-After" not in err.headers()


def test_exhausted_auth_is_502() -> None:
    err = exhausted(FailureKind.UPSTREAM_AUTH, 401, None)
    assert (err.status, err.code) == (502, "upstream_auth_failed")
    assert err.headers()["x-should-retry"] == "false"  # a rejected key does not heal by retrying


def test_a_drained_route_is_a_refusal_not_to_retry() -> None:
    err = route_drained("chat")
    assert (err.status, err.code, err.param) == (503, "route_drained", "model")
    headers = err.headers()
    assert headers["x-should-retry"] == "false" and "Retry-After" not in headers


def test_exhausted_503_keeps_503_with_retry_after() -> None:
    err = exhausted(FailureKind.UPSTREAM_5XX, 503, 7.0)
    assert (err.status, err.code) == (503, "upstream_unavailable")
    assert err.headers()["Retry-After"] == "7"
    assert exhausted(FailureKind.UPSTREAM_5XX, 503, None).headers()["Retry-After"] == "1"


def test_exhausted_anthropic_overloaded_529_reads_as_503() -> None:
    err = exhausted(FailureKind.UPSTREAM_5XX, 529, None)
    assert (err.status, err.code) == (503, "upstream_unavailable")
    assert "(529)" in err.message


@pytest.mark.parametrize("status", [500, 502, 504, 302])
def test_exhausted_other_5xx_is_502(status: int) -> None:
    err = exhausted(FailureKind.UPSTREAM_5XX, status, 3.0)
    assert (err.status, err.code) == (502, "upstream_error")
    assert f"({status})" in err.message
    assert "Retry-After" not in err.headers()


@pytest.mark.parametrize("kind", [FailureKind.CONNECT, FailureKind.RESET])
def test_exhausted_unreachable_is_502(kind: FailureKind) -> None:
    err = exhausted(kind, None, None)
    assert (err.status, err.code) == (502, "upstream_unavailable")
    assert kind.value in err.message


def test_no_upstream() -> None:
    err = no_upstream(3.2, rate_limited=False)
    assert (err.status, err.code, err.type) == (503, "no_healthy_upstream", "server_error")
    assert err.headers()["Retry-After"] == "4"
    limited = no_upstream(2.0, rate_limited=True)
    assert (limited.status, limited.code) == (429, "rate_limit_exceeded")
    assert limited.headers()["Retry-After"] == "2"


# --- stream error event --------------------------------------------------------------------------


def test_stream_error_event_format() -> None:
    event = stream_error_event("upstream broke", "server_error", "stream_broken")
    assert event.startswith(b"data: ")
    assert event.endswith(b"\n\n")
    assert event.count(b"\n") == 2
    assert orjson.loads(event[len(b"data: ") : -2]) == {
        "error": {
            "message": "upstream broke",
            "type": "server_error",
            "param": None,
            "code": "stream_broken",
        }
    }


def test_stream_error_event_escapes_newlines() -> None:
    event = stream_error_event("line1\nline2\r\n\ndata: fake", "server_error", "x")
    assert event.count(b"\n") == 2  # one event, whatever the message
    assert orjson.loads(event[6:-2])["error"]["message"] == "line1\nline2\r\n\ndata: fake"


def test_error_body_is_compact_json() -> None:
    body = error_body("m", "t", None)
    assert body == b'{"error":{"message":"m","type":"t","param":null,"code":null}}'
