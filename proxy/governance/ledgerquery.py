"""Reading the ledger: spending per key and team to rebuild budgets, and usage reports."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from proxy.governance.periods import Period, period_id, period_start

GROUPS = ("key", "team", "route", "upstream")


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
        have = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
        # A ledger not yet opened by a gateway that adds the column (read-only here).
        written = "SUM(tokens_cache_write)" if "tokens_cache_write" in have else "0"
        rows = conn.execute(
            f"SELECT {by}, COUNT(*), SUM(status >= 400), SUM(tokens_in), SUM(tokens_out), "
            f"SUM(tokens_cached), {written}, SUM(cost_usd), SUM(estimated) FROM requests "
            f"WHERE ts >= ? GROUP BY {by} ORDER BY SUM(cost_usd) DESC",
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
        }
        for name, n, errors, tin, tout, cached, wrote, usd, est in rows
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
            for k, v in row.items():
                if k != by:
                    have[k] = (
                        round(float(str(have[k])) + float(str(v)), 6)
                        if k == "cost_usd"
                        else (int(str(have[k])) + int(str(v)))
                    )
    return sorted(out.values(), key=lambda r: -float(str(r["cost_usd"])))
