"""How long a provider asked us to back off, read from its response headers."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

__all__ = ["backoff_hint_s", "parse_go_duration"]

_OPENAI_RESETS = ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
_ANTHROPIC_RESETS = (
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-reset",
)
# Header values are short; anything longer is garbage and not worth a regex pass.
_MAX_VALUE_LEN = 128

_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Go's time.ParseDuration grammar: an optional sign, then "0" or one or more
# <decimal><unit> terms. Units are case-sensitive.
_GO_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_MAX_S = (2**63 - 1) / 1e9
_GO_TERM_SRC = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_GO_TERM = re.compile(_GO_TERM_SRC)
_GO_DURATION = re.compile(f"(?:{_GO_TERM_SRC})+")
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def parse_go_duration(s: str) -> float | None:
    """Seconds in a Go duration string (`1s`, `6m0s`, `1m30.5s`, `12ms`), or None.

    The sign is kept (Go allows `-1s`); callers decide what a negative means.
    """
    s = s.strip()
    if len(s) > _MAX_VALUE_LEN:
        return None
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign = -1.0 if s[0] == "-" else 1.0
        body = s[1:]
    else:
        body = s
    if body == "0":
        return 0.0
    if not _GO_DURATION.fullmatch(body):
        return None
    total = 0.0
    for number, unit in _GO_TERM.findall(body):
        total += float(number) * _GO_UNIT_SECONDS[unit]
    # Go rejects what does not fit an int64 of nanoseconds (about 292 years).
    return sign * total if total <= _GO_MAX_S else None


def backoff_hint_s(
    headers: Mapping[str, str], now_wall_s: float, cap_s: float = 300.0
) -> float | None:
    """Seconds to wait before asking this provider again, within [0, cap_s]; None if unknown.

    Precedence follows the OpenAI and Anthropic SDKs (`retry-after-ms`, then
    `retry-after`), then the providers' own rate-limit reset headers. An
    unparsable or out-of-range header is ignored and the next one is tried.
    """
    if not (math.isfinite(cap_s) and cap_s >= 0.0):
        raise ValueError(f"cap_s must be finite and >= 0, got {cap_s!r}")
    lowered = {k.lower(): v for k, v in headers.items()}
    sources: tuple[Callable[[], float | None], ...] = (
        lambda: _ms(lowered.get("retry-after-ms")),
        lambda: _retry_after(lowered.get("retry-after"), now_wall_s),
        lambda: _largest(lowered, _OPENAI_RESETS, parse_go_duration),
        lambda: _largest(lowered, _ANTHROPIC_RESETS, lambda v: _until(v, now_wall_s)),
    )
    for source in sources:
        seconds = source()
        if seconds is not None and math.isfinite(seconds) and seconds >= 0.0:
            return min(seconds, cap_s)
    return None


def _number(value: str) -> float | None:
    value = value.strip()
    if len(value) > _MAX_VALUE_LEN or not _NUMBER.fullmatch(value):
        return None
    n = float(value)
    # float() turns 1e309 into inf; treat it like any other garbage.
    return n if math.isfinite(n) else None


def _ms(value: str | None) -> float | None:
    if value is None:
        return None
    n = _number(value)
    return None if n is None else n / 1000.0


def _retry_after(value: str | None, now_wall_s: float) -> float | None:
    if value is None:
        return None
    n = _number(value)
    if n is not None:
        return n
    return _http_date_delay(value, now_wall_s)


def _http_date_delay(value: str, now_wall_s: float) -> float | None:
    if len(value) > _MAX_VALUE_LEN:
        return None
    try:
        when = parsedate_to_datetime(value)
        if when.tzinfo is None:
            # RFC 9110 dates are always GMT; a naive result must not be read as local time.
            when = when.replace(tzinfo=UTC)
        stamp = when.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return _past_is_now(stamp - now_wall_s)


def _until(value: str, now_wall_s: float) -> float | None:
    m = _RFC3339.fullmatch(value.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    fraction = float("0" + m.group(7)) if m.group(7) else 0.0
    if m.group(8):
        offset = timedelta(0)
    else:
        oh, om = int(m.group(10)), int(m.group(11))
        if oh > 23 or om > 59:
            return None
        offset = timedelta(hours=oh, minutes=om) * (-1 if m.group(9) == "-" else 1)
    try:
        # RFC 3339 allows a leap second (:60); datetime does not.
        when = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone(offset))
        stamp = when.timestamp()
    except (ValueError, OverflowError):
        return None
    return _past_is_now(stamp + fraction - now_wall_s)


def _past_is_now(delta: float) -> float | None:
    # A reset moment already passed means "go ahead now", not garbage.
    if not math.isfinite(delta):
        return None
    return max(delta, 0.0)


def _largest(
    headers: Mapping[str, str], names: tuple[str, ...], parse: Callable[[str], float | None]
) -> float | None:
    # Both buckets must have refilled before a retry can succeed, so the later reset wins.
    best: float | None = None
    for name in names:
        value = headers.get(name)
        if value is None:
            continue
        seconds = parse(value)
        if seconds is None or not math.isfinite(seconds) or seconds < 0.0:
            continue
        best = seconds if best is None else max(best, seconds)
    return best
