"""The usage ledger: one SQLite row per request, written in batches by a thread off the loop."""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import NamedTuple

BATCH_S = 0.1
"""After the first row of a batch, how long to gather more before one transaction."""
MAX_BATCH = 5000

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    ts REAL NOT NULL, request_id TEXT NOT NULL, key TEXT, team TEXT, route TEXT,
    upstream TEXT, endpoint TEXT, tokens_in INTEGER, tokens_out INTEGER,
    tokens_cached INTEGER, cost_usd REAL NOT NULL, status INTEGER NOT NULL, ttfb_ms REAL,
    duration_ms REAL, failure TEXT, estimated INTEGER NOT NULL, cache TEXT, arm TEXT,
    tokens_cache_write INTEGER
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""


class Row(NamedTuple):
    """One request as the ledger keeps it (a key's name, never the key); a tuple already, so
    the writer hands it to SQLite as is (no per-row conversion holding the GIL)."""

    ts: float
    request_id: str
    key: str | None
    team: str | None
    route: str | None
    upstream: str | None
    endpoint: str
    tokens_in: int | None
    tokens_out: int | None
    tokens_cached: int | None
    cost_usd: float
    status: int
    ttfb_ms: float | None
    duration_ms: float
    failure: str | None
    estimated: bool
    cache: str | None = None
    """`hit` for an answer served by the response cache (cost 0), `miss`, `skip`; else None."""
    arm: str | None = None
    """The A/B split arm (a route name)."""
    tokens_cache_write: int | None = None
    """Of tokens_in, those written to the provider's prompt cache (tokens_cached: read)."""


# Columns named: a migrated ledger has its added columns in the order they were added.
_INSERT = (
    f"INSERT INTO requests ({', '.join(Row._fields)}) VALUES ({', '.join('?' * len(Row._fields))})"
)
_ADDED = {"cache": "TEXT", "arm": "TEXT", "tokens_cache_write": "INTEGER"}
"""Columns appended since the first ledger format, and their types."""
_STOP = object()


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create) the ledger in WAL mode: readers (`gateway usage`) never block writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    migrate(conn)
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a ledger written by an older version up to the current columns (appended)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(requests)")}
    missing = [name for name in _ADDED if name not in columns]
    for name in missing:
        conn.execute(f"ALTER TABLE requests ADD COLUMN {name} {_ADDED[name]}")
    if missing:
        conn.commit()


class Ledger:
    """Rows go into a queue (no I/O on the caller's thread); a writer thread commits batches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.dropped = 0
        """Rows lost after every retry failed (disk full, a file that cannot be written)."""
        self.error: str | None = None
        """The latest write error, until someone reports it (`take_error`)."""

    def start(self) -> None:
        connect(self.path).close()  # fail at start, not on the first request
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()

    def add(self, row: Row) -> None:
        self._queue.put(row)

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued, then stop (blocking: call it from an executor)."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout_s)
        self._thread = None

    def take_error(self) -> tuple[str, int] | None:
        """The latest write error and the rows dropped so far, once (for a log line)."""
        error, self.error = self.error, None
        return None if error is None else (error, self.dropped)

    def _run(self) -> None:
        try:
            conn = connect(self.path)
        except sqlite3.Error as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            return
        try:
            stop = False
            while not stop:
                first = self._queue.get()
                batch: list[Row] = []
                if first is _STOP:
                    stop = True
                else:
                    assert isinstance(first, Row)
                    batch.append(first)
                    time.sleep(BATCH_S)
                while len(batch) < MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stop = True
                        continue
                    assert isinstance(item, Row)
                    batch.append(item)
                if batch:
                    self._write(conn, batch)
        finally:
            conn.close()

    def _write(self, conn: sqlite3.Connection, batch: list[Row]) -> None:
        for attempt in range(3):
            try:
                with conn:
                    conn.executemany(_INSERT, batch)
                self.written += len(batch)
                return
            except sqlite3.Error as exc:  # disk full, locked by a long reader: retry, then say so
                self.error = f"{type(exc).__name__}: {exc}"
                time.sleep(0.2 * (attempt + 1))
        self.dropped += len(batch)
