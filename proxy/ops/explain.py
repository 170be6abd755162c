"""The routing trace of one request: compact for a response header, whole for the admin API."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.core.exchange import Exchange, Step
from proxy.core.failures import FailureKind

HEADER_MAX = 4000
"""Longest `x-gateway-explain` value: proxies in front commonly cap a header at 8 KiB."""


def header(ex: Exchange) -> str:
    """`route=chat; cand a/0=ejected b/1=score:0.012; try a/0@0ms=upstream_5xx(3ms); ...`"""
    parts = [f"route={ex.route.name if ex.route is not None else '-'}"]
    if ex.considered:
        parts.append("cand " + " ".join(f"{u}/{t}={why}" for u, t, why in ex.considered))
    for s in ex.steps:
        at, took = round(s.at_s * 1000), round(s.took_s * 1000)
        parts.append(f"try {s.upstream}/{s.tier}@{at}ms={s.outcome}({took}ms)")
    text = "; ".join(parts)
    return text if len(text) <= HEADER_MAX else text[: HEADER_MAX - 3] + "..."


@dataclass(slots=True)
class Trace:
    """What is kept of a settled request for its trace (never the body or any header).

    Not frozen: a frozen dataclass sets each field through object.__setattr__, which would
    triple the cost of keeping a trace per request."""

    id: str
    wall: float
    route: str | None
    status: int
    upstream: str | None
    key: str | None
    error_code: str | None
    failure: FailureKind | None
    duration_s: float
    considered: tuple[tuple[str, int, str], ...]
    steps: list[Step]

    @classmethod
    def of(cls, ex: Exchange, duration_s: float) -> Trace:
        route = ex.route.name if ex.route is not None else None
        return cls(
            ex.id,
            ex.wall_started,
            route,
            ex.status,
            ex.upstream,
            ex.key_name,
            ex.error_code,
            ex.failure,
            duration_s,
            ex.considered,
            ex.steps,
        )

    def document(self) -> dict[str, object]:
        """Everything the trace knows, for `GET /admin/requests/ID`."""
        return {
            "id": self.id,
            "at": self.wall,
            "route": self.route,
            "status": self.status,
            "upstream": self.upstream,
            "key": self.key,
            "error_code": self.error_code,
            "failure": None if self.failure is None else self.failure.value,
            "duration_ms": round(self.duration_s * 1000, 1),
            "candidates": [
                {"upstream": u, "tier": t, "verdict": why} for u, t, why in self.considered
            ],
            "attempts": [
                {
                    "upstream": s.upstream,
                    "tier": s.tier,
                    "at_ms": round(s.at_s * 1000, 1),
                    "outcome": s.outcome,
                    "took_ms": round(s.took_s * 1000, 1),
                }
                for s in self.steps
            ],
        }
