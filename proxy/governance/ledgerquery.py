"""Reading the ledger: spending per key and team to rebuild budgets, and usage reports."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from proxy.governance.periods import Period, period_id, period_start

GROUPS = ("key", "team", "route", "upstream", "arm")
_AVERAGES = ("ttfb_ms_avg", "duration_ms_avg")
"""Mean TTFB and duration per group: latency per A/B arm (or upstream) next to errors and cost."""


def spent(conn: sqlite3.Connection, now: float) -> dict[tuple[str, str], float]:
    """USD by (scope, period id) for the current UTC day, month and all time."""
    out: dict[tuple[str, str], float] = {}
    for period in (Period.DAY, Period.MONTH, Period.TOTAL):
        since = period_start(period, now)
        pid = period_id(period, now)
        for column in ("key", "team"):
            rows = conn.execute(
                f"SELECT {column}, SUM(cost_usd) FROM requests "
                f"WHERE ts >= ? AND {column} IS NOT NULL GROUP BY {column}",
                (since,),
            )
            for name, usd in rows:
                out[(f"{column}:{name}", pid)] = float(usd or 0.0)
    return out


def report(path: Path, by: str, since: float) -> list[dict[str, object]]:
    """Requests, tokens and cost grouped by key, team, route or upstream since `since`."""
    if by not in GROUPS:
        raise ValueError(f"by must be one of {', '.join(GROUPS)}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
        # A ledger not yet opened by a gateway that adds the columns (read-only here).
        group = by if by in columns else "NULL"  # a file from before `arm`: one group
        written = "SUM(tokens_cache_write)" if "tokens_cache_write" in columns else "0"
        rows = conn.execute(
            f"SELECT {group}, COUNT(*), SUM(status >= 400), SUM(tokens_in), SUM(tokens_out), "
            f"SUM(tokens_cached), {written}, SUM(cost_usd), SUM(estimated), AVG(ttfb_ms), "
            "AVG(duration_ms) FROM requests "
            f"WHERE ts >= ? GROUP BY {group} ORDER BY SUM(cost_usd) DESC",
            (since,),
        ).fetchall()
    finally:
        conn.close()
    return [
        {
            by: name,
            "requests": n,
            "errors": int(errors or 0),
            "tokens_in": int(tin or 0),
            "tokens_out": int(tout or 0),
            "tokens_cached": int(cached or 0),
            "tokens_cache_write": int(wrote or 0),
            "cost_usd": round(float(usd or 0.0), 6),
            "estimated": int(est or 0),
            "ttfb_ms_avg": round(float(ttfb or 0.0), 2),
            "duration_ms_avg": round(float(took or 0.0), 2),
        }
        for name, n, errors, tin, tout, cached, wrote, usd, est, ttfb, took in rows
    ]


def merged(reports: list[list[dict[str, object]]], by: str) -> list[dict[str, object]]:
    """Several ledgers' reports (one per gateway instance) summed per group, dearest first."""
    out: dict[object, dict[str, object]] = {}
    for rows in reports:
        for row in rows:
            have = out.get(row[by])
            if have is None:
                out[row[by]] = dict(row)
                continue
            n_have, n_row = int(str(have["requests"])), int(str(row["requests"]))
            for k in _AVERAGES:  # weighted by requests, before the counts are summed
                mean = float(str(have[k])) * n_have + float(str(row[k])) * n_row
                have[k] = round(mean / max(n_have + n_row, 1), 2)
            for k, v in row.items():
                if k != by and k not in _AVERAGES:
                    have[k] = (
                        round(float(str(have[k])) + float(str(v)), 6)
                        if k == "cost_usd"
                        else (int(str(have[k])) + int(str(v)))
                    )
    return sorted(out.values(), key=lambda r: -float(str(r["cost_usd"])))
