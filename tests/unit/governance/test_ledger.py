"""The SQLite ledger: batched rows, flushed on close, summed for budgets and reports."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from proxy.governance.ledger import Ledger, Row, connect
from proxy.governance.ledgerquery import report, spent


def row(ts: float, key: str, team: str | None, usd: float, status: int = 200) -> Row:
    return Row(
        ts, f"r{ts}", key, team, "chat", "up", "chat", 10, 5, 2, usd, status, 1.0, 2.0, None, False
    )


def test_close_flushes_every_row_and_budgets_sum_by_period(tmp_path: Path) -> None:
    now = dt.datetime(2026, 12, 3, 12, tzinfo=dt.UTC).timestamp()
    ledger = Ledger(tmp_path / "usage.db")
    ledger.start()
    ledger.add(row(now - 40 * 86400, "a", "t", 100.0))  # an earlier month
    ledger.add(row(now - 2 * 86400, "a", "t", 10.0))  # earlier this month
    for _ in range(500):
        ledger.add(row(now, "a", "t", 0.01))
    ledger.add(row(now, "b", None, 1.0, status=500))
    ledger.close()
    assert ledger.written == 503
    conn = connect(tmp_path / "usage.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    got = spent(conn, now)
    conn.close()
    assert got[("key:a", "2026-12-03")] == pytest.approx(5.0)
    assert got[("key:a", "2026-12")] == pytest.approx(15.0)
    assert got[("key:a", "total")] == pytest.approx(115.0)
    assert got[("team:t", "total")] == pytest.approx(115.0)
    assert ("team:None", "total") not in got
    rows = report(tmp_path / "usage.db", "key", now - 86400)
    assert [r["key"] for r in rows] == ["a", "b"]
    assert rows[0]["requests"] == 500
    assert rows[1]["errors"] == 1
    with pytest.raises(ValueError, match="by must be"):
        report(tmp_path / "usage.db", "status; DROP TABLE requests", 0)


def test_a_write_that_keeps_failing_is_counted_and_reported_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "usage.db")
    ledger.start()
    other = connect(tmp_path / "usage.db")
    other.execute("DROP TABLE requests")
    other.commit()
    other.close()
    ledger.add(row(1.0, "a", None, 1.0))
    ledger.close()
    assert ledger.written == 0
    assert ledger.dropped == 1
    taken = ledger.take_error()
    assert taken is not None and "no such table" in taken[0] and taken[1] == 1
    assert ledger.take_error() is None


def test_old_ledger_gains_the_arm_column_and_reports_by_arm(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE requests (ts REAL NOT NULL, request_id TEXT NOT NULL, key TEXT, "
        "team TEXT, route TEXT, upstream TEXT, endpoint TEXT, tokens_in INTEGER, "
        "tokens_out INTEGER, tokens_cached INTEGER, cost_usd REAL NOT NULL, "
        "status INTEGER NOT NULL, ttfb_ms REAL, duration_ms REAL, failure TEXT, "
        "estimated INTEGER NOT NULL);"
        "INSERT INTO requests VALUES (1.0,'r0','k',NULL,'chat','up','chat',1,1,0,0.5,200,"
        "1.0,2.0,NULL,0);"
    )
    old.commit()
    old.close()
    assert report(path, "arm", 0.0)[0]["arm"] is None  # read-only, not yet migrated
    ledger = Ledger(path)
    ledger.start()
    ledger.add(row(2.0, "k", None, 1.0)._replace(arm="chat-b"))
    ledger.add(row(3.0, "k", None, 2.0)._replace(arm="chat-b"))
    ledger.close()
    got = {r["arm"]: (r["requests"], r["cost_usd"]) for r in report(path, "arm", 0.0)}
    assert got == {None: (1, 0.5), "chat-b": (2, 3.0)}
    assert {r["ttfb_ms_avg"] for r in report(path, "arm", 0.0)} == {1.0}


def test_latency_averages_per_group_and_merged_by_request_count() -> None:
    from proxy.governance.ledgerquery import merged

    base = {"requests": 1, "errors": 0, "tokens_in": 1, "tokens_out": 1, "tokens_cached": 0}
    one = [
        {
            "arm": "x",
            **base,
            "cost_usd": 1.0,
            "estimated": 0,
            "ttfb_ms_avg": 10.0,
            "duration_ms_avg": 20.0,
        }
    ]
    three = [
        {
            "arm": "x",
            **base,
            "requests": 3,
            "cost_usd": 1.0,
            "estimated": 0,
            "ttfb_ms_avg": 30.0,
            "duration_ms_avg": 40.0,
        }
    ]
    (row_,) = merged([one, three], "arm")
    assert (row_["requests"], row_["ttfb_ms_avg"], row_["duration_ms_avg"]) == (4, 25.0, 35.0)


OLD_SCHEMA = """
CREATE TABLE requests (
    ts REAL NOT NULL, request_id TEXT NOT NULL, key TEXT, team TEXT, route TEXT,
    upstream TEXT, endpoint TEXT, tokens_in INTEGER, tokens_out INTEGER,
    tokens_cached INTEGER, cost_usd REAL NOT NULL, status INTEGER NOT NULL, ttfb_ms REAL,
    duration_ms REAL, failure TEXT, estimated INTEGER NOT NULL
);
"""


def test_a_ledger_from_before_cache_writes_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(OLD_SCHEMA)
    with old:
        old.execute(
            "INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (1.0, "r0", "a", None, "chat", "up", "chat", 10, 5, 2, 0.5, 200, 1.0, 2.0, None, 0),
        )
    old.close()
    # A report before any gateway opened it: no column yet, writes read as 0.
    assert report(path, "upstream", 0)[0]["tokens_cache_write"] == 0
    ledger = Ledger(path)
    ledger.start()
    ledger.add(row(2.0, "a", None, 1.0)._replace(tokens_cache_write=7))
    ledger.close()
    rows = report(path, "upstream", 0)
    assert len(rows) == 1
    assert (
        rows[0].items()
        >= {
            "upstream": "up",
            "requests": 2,
            "errors": 0,
            "tokens_in": 20,
            "tokens_out": 10,
            "tokens_cached": 4,
            "tokens_cache_write": 7,
            "cost_usd": 1.5,
            "estimated": 0,
        }.items()
    )
