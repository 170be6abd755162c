"""A route's hedging policy (`hedge = {...}`): when a second attempt starts, and how often."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from proxy.config.reader import Reader, keys_of
from proxy.config.schema import custom, setting


@dataclass(frozen=True, slots=True, kw_only=True)
class Hedge:
    """Start one more attempt on another upstream when the first has no first byte in time."""

    after_s: float | None = setting(None, "after_ms", lo=1, unit=0.001)
    """A fixed delay; None: from the first upstream's recent TTFB percentile."""
    percentile: float | None = custom(None, "after")
    """`after = "p95"`: this quantile of the upstream's recent TTFBs (never below floor_s)."""
    floor_s: float = setting(0.1, "floor_ms", lo=1, unit=0.001)
    """The shortest percentile delay (a fast upstream's p95 must not hedge every request)."""
    budget_pct: float = setting(10.0, lo=0)
    """At most this share of the route's requests over a sliding minute are hedged..."""
    min_per_minute: int = setting(3, lo=0)
    """...but this many hedges per minute are always allowed, however quiet the route."""


HEDGE_KEYS = keys_of(Hedge)
_PERCENTILE = re.compile(r"p(\d{1,2}(\.\d+)?)")


def read_hedge(c: Reader, raw: object, path: str) -> Hedge | None:
    """`hedge = { after_ms = 800 }` or `hedge = { after = "p95" }`, with budget options."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        c.err(path, 'must be a table like { after_ms = 800 } or { after = "p95" }')
        return None
    c.known(raw, HEDGE_KEYS, path)
    hedge = c.read(Hedge, raw, path)
    after = raw.get("after")
    percentile = None
    if after is not None:
        m = _PERCENTILE.fullmatch(after) if isinstance(after, str) else None
        if m is None or not 0 < float(m.group(1)) < 100:
            c.err(f"{path}.after", 'must be a percentile "p50" .. "p99.9"')
        else:
            percentile = float(m.group(1)) / 100
    if after is None and hedge.after_s is None:
        c.err(path, 'needs after_ms = N or after = "pNN"')
        return None
    if after is not None and hedge.after_s is not None:
        c.err(path, "after_ms and after exclude each other")
        return None
    if after is not None and percentile is None:
        return None
    return replace(hedge, percentile=percentile)
