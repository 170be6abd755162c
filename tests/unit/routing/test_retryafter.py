"""Tests for proxy.routing.retryafter: every provider back-off header format, garbage, bounds."""

from __future__ import annotations

import math
from email.utils import formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.routing.retryafter import backoff_hint_s, parse_go_duration

NOW = 1_755_780_000.0  # 2025-08-21T12:40:00Z
HEADERS = (
    "retry-after-ms",
    "retry-after",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-reset",
)


def hint(headers: dict[str, str], cap_s: float = 300.0) -> float | None:
    return backoff_hint_s(headers, NOW, cap_s)


# --- Go durations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("12ms", 0.012),
        ("1m30.5s", 90.5),
        ("1s500ms", 1.5),
        ("1h2m", 3720.0),
        ("0", 0.0),
        ("0s", 0.0),
        ("2.5h", 9000.0),
        (".5s", 0.5),
        ("1.s", 1.0),
        ("250us", 0.00025),
        ("250\u00b5s", 0.00025),
        ("100ns", 1e-7),
        ("-1s", -1.0),
        ("+2s", 2.0),
        (" 3s ", 3.0),
    ],
)
def test_go_duration_valid(text: str, seconds: float) -> None:
    got = parse_go_duration(text)
    assert got is not None
    assert math.isclose(got, seconds, rel_tol=1e-12, abs_tol=1e-15)


@pytest.mark.parametrize(
    "text",
    ["", "1", "s", "1x", "1S", "1.5.s", "1e3s", "1 s", "--1s", "nan", "inf", "1s ms", ".s", "0x1s"],
)
def test_go_duration_invalid(text: str) -> None:
    assert parse_go_duration(text) is None


def test_go_duration_overflow_is_none() -> None:
    # Go's limit: an int64 of nanoseconds.
    assert parse_go_duration("2562047h") == 2562047 * 3600.0
    assert parse_go_duration("2562048h") is None
    assert parse_go_duration("9" * 120 + "h") is None


# --- precedence -------------------------------------------------------------------------------


def test_none_when_nothing_present() -> None:
    assert hint({}) is None
    assert hint({"content-type": "application/json", "x-ratelimit-remaining-requests": "0"}) is None


def test_retry_after_ms_wins_over_everything() -> None:
    headers = {
        "retry-after-ms": "1500",
        "retry-after": "9",
        "x-ratelimit-reset-requests": "20s",
        "anthropic-ratelimit-requests-reset": "2025-08-21T12:41:00Z",
    }
    assert hint(headers) == 1.5


def test_retry_after_before_rate_limit_resets() -> None:
    assert hint({"retry-after": "9", "x-ratelimit-reset-requests": "20s"}) == 9.0


def test_openai_before_anthropic() -> None:
    headers = {
        "x-ratelimit-reset-tokens": "3s",
        "anthropic-ratelimit-requests-reset": "2025-08-21T12:41:00Z",
    }
    assert hint(headers) == 3.0


def test_garbage_falls_through_to_next_header() -> None:
    headers = {"retry-after-ms": "soon", "retry-after": "-3", "x-ratelimit-reset-tokens": "6m0s"}
    assert hint(headers) == 300.0  # 360 s clamped to the cap
    assert hint(headers, cap_s=1000.0) == 360.0


# --- each format ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"), [("1500", 1.5), ("1500.5", 1.5005), ("0", 0.0), ("20", 0.02)]
)
def test_retry_after_ms(value: str, seconds: float) -> None:
    assert hint({"retry-after-ms": value}) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "seconds"), [("2", 2.0), ("1.5", 1.5), (" 7 ", 7.0)])
def test_retry_after_seconds(value: str, seconds: float) -> None:
    assert hint({"retry-after": value}) == seconds


def test_retry_after_http_date() -> None:
    date = formatdate(NOW + 30, usegmt=True)
    assert hint({"retry-after": date}) == pytest.approx(30.0)


def test_retry_after_http_date_obsolete_and_naive_forms_are_gmt() -> None:
    # RFC 850 form and asctime form; both are GMT by definition.
    assert hint({"retry-after": "Thursday, 21-Aug-25 12:40:45 GMT"}) == pytest.approx(45.0)
    assert hint({"retry-after": "Thu Aug 21 12:40:45 2025"}) == pytest.approx(45.0)


def test_retry_after_http_date_in_the_past_means_now() -> None:
    assert hint({"retry-after": formatdate(NOW - 600, usegmt=True)}) == 0.0


def test_openai_larger_reset_wins() -> None:
    headers = {"x-ratelimit-reset-requests": "1s500ms", "x-ratelimit-reset-tokens": "12ms"}
    assert hint(headers) == 1.5
    headers = {"x-ratelimit-reset-requests": "12ms", "x-ratelimit-reset-tokens": "1m30.5s"}
    assert hint(headers) == 90.5


def test_openai_one_garbage_reset_uses_the_other() -> None:
    headers = {"x-ratelimit-reset-requests": "garbage", "x-ratelimit-reset-tokens": "2s"}
    assert hint(headers) == 2.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("2025-08-21T12:40:59Z", 59.0),
        ("2025-08-21T12:40:59.5Z", 59.5),
        ("2025-08-21t12:40:10z", 10.0),
        ("2025-08-21T14:40:20+02:00", 20.0),
        ("2025-08-21T10:40:20-02:00", 20.0),
        ("2025-08-21 12:40:05Z", 5.0),
        ("2025-08-21T12:00:00Z", 0.0),
    ],
)
def test_anthropic_rfc3339(value: str, seconds: float) -> None:
    assert hint({"anthropic-ratelimit-requests-reset": value}) == pytest.approx(seconds)


def test_anthropic_larger_reset_wins() -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": "2025-08-21T12:40:10Z",
        "anthropic-ratelimit-tokens-reset": "2025-08-21T12:40:50Z",
        "anthropic-ratelimit-input-tokens-reset": "garbage",
        "anthropic-ratelimit-output-tokens-reset": "2025-08-21T12:40:30Z",
    }
    assert hint(headers) == pytest.approx(50.0)


@pytest.mark.parametrize(
    "value",
    [
        "2025-08-21",
        "2025-08-21T12:40:59",
        "2025-13-21T12:40:59Z",
        "2025-02-30T12:40:59Z",
        "2025-08-21T25:40:59Z",
        "2025-08-21T12:40:59+24:00",
        "1755780059",
        "",
    ],
)
def test_anthropic_rfc3339_garbage(value: str) -> None:
    assert hint({"anthropic-ratelimit-requests-reset": value}) is None


def test_anthropic_extreme_dates_stay_bounded() -> None:
    assert hint({"anthropic-ratelimit-requests-reset": "0001-01-01T00:00:00+23:59"}) == 0.0
    assert hint({"anthropic-ratelimit-requests-reset": "9999-12-31T23:59:59-23:59"}) == 300.0
    assert hint({"anthropic-ratelimit-requests-reset": "2025-08-21T12:40:60Z"}) == 59.0


# --- case-insensitivity -----------------------------------------------------------------------


def test_header_names_any_case() -> None:
    assert hint({"Retry-After": "3"}) == 3.0
    assert hint({"RETRY-AFTER-MS": "250"}) == 0.25
    assert hint({"X-RateLimit-Reset-Tokens": "4s"}) == 4.0
    assert hint({"Anthropic-RateLimit-Tokens-Reset": "2025-08-21T12:40:08Z"}) == 8.0


def test_aiohttp_multidict_accepted() -> None:
    from multidict import CIMultiDict, CIMultiDictProxy

    headers = CIMultiDictProxy(CIMultiDict({"Retry-After": "5"}))
    assert backoff_hint_s(headers, NOW) == 5.0


# --- garbage and bounds -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["retry-after-ms", "retry-after"])
@pytest.mark.parametrize(
    "value",
    [
        "",
        "soon",
        "-1",
        "-0.5",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "Infinity",
        "1e309",
        "1" * 400,
        "1_000",
        "0x10",
        "+5",
        "5 s",
        "\x00",
        "Wed, 99 Foo 2015 07:28:00 GMT",
    ],
)
def test_garbage_ignored(name: str, value: str) -> None:
    assert hint({name: value}) is None


@pytest.mark.parametrize("value", ["-5s", "nan", "1e309s", "9" * 400 + "s"])
def test_openai_garbage_ignored(value: str) -> None:
    assert hint({"x-ratelimit-reset-requests": value}) is None


def test_clamped_to_cap() -> None:
    assert hint({"retry-after": "86400"}) == 300.0
    assert hint({"retry-after": "86400"}, cap_s=60.0) == 60.0
    assert hint({"retry-after-ms": "1e300"}) == 300.0
    assert hint({"retry-after": "3"}, cap_s=0.0) == 0.0


@pytest.mark.parametrize("cap", [-1.0, math.nan, math.inf])
def test_bad_cap_rejected(cap: float) -> None:
    with pytest.raises(ValueError, match="cap_s"):
        backoff_hint_s({"retry-after": "1"}, NOW, cap)


# --- property ---------------------------------------------------------------------------------

header_values = st.one_of(
    st.text(max_size=60),
    st.from_regex(r"-?[0-9]{0,400}(\.[0-9]{0,5})?(e[+-]?[0-9]{1,4})?", fullmatch=True),
    st.from_regex(r"-?([0-9]{1,6}(\.[0-9]{0,3})?(ns|us|ms|s|m|h)){1,4}", fullmatch=True),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})",
        fullmatch=True,
    ),
    st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "-0", "0", "Infinity"]),
)


@settings(max_examples=500, deadline=None)
@given(
    headers=st.dictionaries(st.sampled_from(HEADERS), header_values, max_size=len(HEADERS)),
    now=st.floats(min_value=0.0, max_value=4e9),
    cap=st.floats(min_value=0.0, max_value=1e6),
    upper=st.booleans(),
)
def test_never_raises_and_bounded(
    headers: dict[str, str], now: float, cap: float, upper: bool
) -> None:
    if upper:
        headers = {k.upper(): v for k, v in headers.items()}
    got = backoff_hint_s(headers, now, cap)
    assert got is None or (math.isfinite(got) and 0.0 <= got <= cap)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_go_duration_never_raises(text: str) -> None:
    got = parse_go_duration(text)
    assert got is None or math.isfinite(got)
