"""The simulator's figures per run (success, TTFB percentiles, attempts, cost) and its table."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from proxy.server.simload import Outcome

SUCCESS_TARGET = 0.9999
TTFB_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class RunResult:
    """One option set under one condition (`baseline`: no incident, `incident`: the scenario)."""

    option: str
    run: str
    requests: int
    succeeded: int
    p50_ttfb_ms: float
    p99_ttfb_ms: float
    attempts_per_request: float
    cost_usd: float
    by_upstream: dict[str, int]
    failures: dict[str, int]
    """What the client saw of each failed request: status and error code (0: no response)."""

    @property
    def success(self) -> float:
        return self.succeeded / self.requests if self.requests else 0.0

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "success": self.success}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(
    option: str, run: str, outcomes: Sequence[Outcome], access: Iterable[dict[str, object]]
) -> RunResult:
    """Figures from the client's outcomes and the gateway's access lines of the same requests.

    Attempts and cost come from the access line (a request whose response never reached the
    client has one too); the response header is the fallback when a line is missing.
    """
    lines = {str(a.get("request_id")): a for a in access}
    attempts = 0
    cost = 0.0
    by_upstream: dict[str, int] = {}
    failures: dict[str, int] = {}
    for o in outcomes:
        line = lines.get(o.request_id)
        n = line.get("attempts") if line else None
        attempts += n if isinstance(n, int) else o.attempts
        usd = line.get("cost_usd") if line else None
        cost += float(usd) if isinstance(usd, int | float) else 0.0
        if o.ok:
            by_upstream[o.upstream] = by_upstream.get(o.upstream, 0) + 1
        else:
            code = line.get("error") if line else None
            what = f"{o.status} {code}" if code else str(o.status)
            failures[what] = failures.get(what, 0) + 1
    ttfbs = [o.ttfb_s * 1000 for o in outcomes if o.ok and o.ttfb_s is not None]
    return RunResult(
        option=option,
        run=run,
        requests=len(outcomes),
        succeeded=sum(o.ok for o in outcomes),
        p50_ttfb_ms=percentile(ttfbs, 50),
        p99_ttfb_ms=percentile(ttfbs, 99),
        attempts_per_request=attempts / len(outcomes) if outcomes else 0.0,
        cost_usd=cost,
        by_upstream=dict(sorted(by_upstream.items())),
        failures=dict(sorted(failures.items())),
    )


def meets_target(incident: RunResult, baseline: RunResult) -> bool:
    """Success >= 99.99% and p99 TTFB within 2x of the same load with no incident."""
    return (
        incident.success >= SUCCESS_TARGET
        and incident.p99_ttfb_ms <= TTFB_FACTOR * baseline.p99_ttfb_ms
    )


def table(results: Sequence[RunResult]) -> str:
    """One block per option set: the baseline row, the incident row, and the target verdict."""
    out: list[str] = []
    header = (
        f"  {'run':<9}{'requests':>9}{'success':>10}{'p50 TTFB':>10}{'p99 TTFB':>10}"
        f"{'attempts/req':>14}{'cost USD':>11}  answered by"
    )
    for option in dict.fromkeys(r.option for r in results):
        rows = [r for r in results if r.option == option]
        out += [f"option set: {option}", header]
        for r in rows:
            served = " ".join(f"{k}={v}" for k, v in r.by_upstream.items())
            if r.failures:
                served += "; failed: " + ", ".join(f"{k} x{v}" for k, v in r.failures.items())
            out.append(
                f"  {r.run:<9}{r.requests:>9}{r.success * 100:>9.2f}%"
                f"{r.p50_ttfb_ms:>8.0f}ms{r.p99_ttfb_ms:>8.0f}ms"
                f"{r.attempts_per_request:>14.2f}{r.cost_usd:>11.4f}  {served}"
            )
        base = next((r for r in rows if r.run == "baseline"), None)
        hit = next((r for r in rows if r.run == "incident"), None)
        if base and hit:
            verdict = "meets" if meets_target(hit, base) else "misses"
            out.append(
                f"  -> {verdict} the target (success >= 99.99%, p99 TTFB <= 2 x baseline "
                f"= {TTFB_FACTOR * base.p99_ttfb_ms:.0f}ms)"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"
