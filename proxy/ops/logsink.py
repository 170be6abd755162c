"""The log writer thread: batches of lines reach stdout off the event loop, in bounded memory.

Why a thread: a write to a pipe or socket whose reader is slow (journald rate limiting, a
`| tee` on a slow disk, a pipe nobody reads) blocks for as long as the reader lags, and a
blocking write on the event loop thread makes every request wait. The loop thread keeps
appending lines to a list (one append per line, see `logs.LineWriter`); every 50 ms or
64 KiB it hands the whole list over here under a lock held for a few list operations, and
one daemon thread joins and writes it with `os.write`, which releases the GIL while it
blocks. A thread per process, not a thread handoff per line: the loop pays one lock and
one notify per batch. asyncio's own pipe transports were not used: they buffer without
bound, and `flush()` at shutdown must work without a running loop.

Bounded: when the reader is stuck, pending bytes stop at `cap`; whole lines beyond it are
dropped and counted, and nothing is accepted again until the writer has written half the
cap (so a stuck reader costs one gap, not one per batch). Each gap is a marker in the queue
where the lines went missing; when the writer reaches it, it writes one
`{"event":"log_lines_dropped","count":N,...}` line, so an operator learns what was lost.

A closed pipe (EPIPE) or a closed fd 1 ends writing for good, silently, as before. A forked
child starts with an empty queue and no thread; the thread starts at the first batch, in
the process that writes (workers are new interpreters started with exec; a bare fork works too).
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
from collections import deque

import orjson

CAP_BYTES = 16 * 1024 * 1024
"""Bytes handed over and not yet written, at most (beyond: lines are dropped and counted)."""

_GONE = frozenset({errno.EPIPE, errno.EBADF, errno.ECONNRESET})
"""Write errors after which nothing will ever be read: stop writing."""


def iso_utc(t: float) -> str:
    """An ISO-8601 UTC timestamp with microseconds, like the gateway's other log lines."""
    second = int(t)
    prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{prefix}.{int((t - second) * 1e6):06d}Z"


class _Gap:
    """Lines dropped at one place in the stream: their count, size and the first drop's time."""

    __slots__ = ("count", "nbytes", "since")

    def __init__(self, since: float) -> None:
        self.count = 0
        self.nbytes = 0
        self.since = since

    def line(self, cap: int, tag: dict[str, str]) -> bytes:
        fields: dict[str, object] = {
            "event": "log_lines_dropped",
            "count": self.count,
            "bytes": self.nbytes,
            "since": iso_utc(self.since),
            "cap_bytes": cap,
            "reason": "stdout was not read fast enough",
            "level": "warning",
            "timestamp": iso_utc(time.time()),
        }
        fields.update(tag)
        return orjson.dumps(fields) + b"\n"


class Sink:
    """One daemon thread that writes handed-over batches of lines to a file descriptor."""

    def __init__(self, fd: int = 1, cap: int = CAP_BYTES) -> None:
        self.fd = fd
        self.cap = cap
        self.tag: dict[str, str] = {}
        """Fields added to the sink's own warning line (the worker's tag)."""
        self.reset()

    def reset(self) -> None:
        """Empty and threadless (also in a forked child: the parent writes what it queued)."""
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[list[bytes] | _Gap] = deque()
        self._pending = 0
        self._writing = False
        self._dropping = False
        self._written = 0
        self._stuck_at: int | None = None
        self._closed = False
        self._thread: threading.Thread | None = None

    @property
    def pending(self) -> int:
        """Bytes handed over and not yet written."""
        return self._pending

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, lines: list[bytes], size: int) -> None:
        """Queue one batch (`size` = its bytes) for the writer; never waits on the reader."""
        with self._cond:
            if self._closed:
                return
            if self._thread is None:
                self._start()
            if self._dropping and self._pending > self.cap // 2:
                self._drop(len(lines), size)
                return
            self._dropping = False
            if self._pending + size > self.cap:
                room, kept, kept_size = self.cap - self._pending, 0, 0
                while kept < len(lines) and kept_size + len(lines[kept]) <= room:
                    kept_size += len(lines[kept])
                    kept += 1
                if kept:
                    self._queue.append(lines[:kept])
                    self._pending += kept_size
                self._drop(len(lines) - kept, size - kept_size)
                self._dropping = True
            else:
                self._queue.append(lines)
                self._pending += size
            self._cond.notify_all()

    def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued is written (or writing has ended), at most `timeout_s`.

        After one wait ran out, the next ones return at once until the writer writes a byte
        again: a dead reader costs shutdown one timeout, not one per flush call.
        """
        with self._cond:
            if self._stuck_at == self._written:
                return self._idle()
            done = self._cond.wait_for(self._idle, timeout_s)
            self._stuck_at = None if done else self._written
            return done

    def _idle(self) -> bool:
        return self._closed or (not self._queue and not self._writing)

    def _drop(self, count: int, nbytes: int) -> None:
        if not count:
            return
        tail = self._queue[-1] if self._queue else None
        if not isinstance(tail, _Gap):
            tail = _Gap(time.time())
            self._queue.append(tail)
        tail.count += count
        tail.nbytes += nbytes

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while not self._queue:
                    self._writing = False
                    cond.notify_all()
                    cond.wait()
                item = self._queue.popleft()
                self._writing = True
            # A popped gap is no longer the queue's tail: no one changes its counts now.
            data = item.line(self.cap, self.tag) if isinstance(item, _Gap) else b"".join(item)
            gone = self._write(data)
            with cond:
                if not isinstance(item, _Gap):
                    self._pending -= len(data)
                if gone:
                    self._closed = True
                    self._queue.clear()
                    self._pending = 0
                    self._writing = False
                    cond.notify_all()
                    return

    def _write(self, data: bytes) -> bool:
        """Write all of `data`; True when the reader is gone for good."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
                self._written += n  # only this thread writes it
                view = view[n:]
            except BlockingIOError:  # a non-blocking stdout: wait here, off the loop
                select.select([], [self.fd], [], 1.0)
            except OSError as exc:
                return exc.errno in _GONE  # otherwise (a full disk) this batch is lost
        return False
