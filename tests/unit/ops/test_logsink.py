"""Tests for the log writer thread: a stuck stdout reader never blocks, memory stays capped."""

from __future__ import annotations

import asyncio
import fcntl
import os
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pytest

from proxy.ops import logs
from proxy.ops.logs import LineWriter


@dataclass
class Pipe:
    """A small pipe whose reader the test controls; `fill()` makes every write block."""

    r: int
    w: int
    taken: bytearray = field(default_factory=bytearray)
    _stop: threading.Event = field(default_factory=threading.Event)
    _reader: threading.Thread | None = None

    def resume(self, after_s: float = 0.0) -> None:
        """Read everything from now on (after `after_s`), in a thread, into `taken`."""
        self._reader = threading.Thread(target=self._read, args=(after_s,), daemon=True)
        self._reader.start()

    def _read(self, after_s: float) -> None:
        self._stop.wait(after_s)
        while not self._stop.is_set():
            if select.select([self.r], [], [], 0.02)[0]:
                self.taken += os.read(self.r, 65536)

    def stop(self) -> bytes:
        """Stop reading; what was read, then what is left in the pipe."""
        if self._reader is not None:
            self._stop.set()
            self._reader.join(timeout=5.0)
            self._reader = None
        return bytes(self.taken) + self.read_all()

    def fill(self) -> None:
        os.set_blocking(self.w, False)
        try:
            while True:
                os.write(self.w, b"#" * 4096)
        except BlockingIOError:
            pass
        os.set_blocking(self.w, True)

    def read_all(self) -> bytes:
        """Everything in the pipe now, without waiting."""
        os.set_blocking(self.r, False)
        out = bytearray()
        try:
            while chunk := os.read(self.r, 65536):
                out += chunk
        except BlockingIOError:
            pass
        os.set_blocking(self.r, True)
        return bytes(out)


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    r, w = os.pipe()
    fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)
    p = Pipe(r, w)
    yield p
    p.stop()
    os.close(p.r)  # a writer thread blocked on the pipe gets EPIPE and ends
    os.close(p.w)


def json_lines(data: bytes) -> list[dict[str, object]]:
    """The JSON lines in `data` (the first may follow the filler)."""
    return [orjson.loads(x.lstrip(b"#")) for x in data.split(b"\n") if x.lstrip(b"#")]


def line(i: int, width: int = 99) -> bytes:
    return orjson.dumps({"event": "e", "i": i}).ljust(width)


async def test_a_stuck_reader_blocks_no_call_on_the_event_loop(pipe: Pipe) -> None:
    pipe.fill()
    writer = LineWriter(pipe.w)
    for i in range(2000):  # past FLUSH_BYTES: the size-triggered hand-off runs too
        writer.msg(line(i))
    await asyncio.sleep(logs.FLUSH_AFTER_S * 3)  # the timer's hand-off runs on the loop
    writer.msg(line(2000))
    writer.hand_off()
    assert writer.sink.pending == 2001 * 100  # all handed over, none written
    pipe.resume()
    assert writer.flush(timeout_s=5.0)
    got = json_lines(pipe.stop())
    assert [x["i"] for x in got] == list(range(2001))


def test_outside_an_event_loop_a_line_is_written_at_once(pipe: Pipe) -> None:
    writer = LineWriter(pipe.w)
    writer.msg(b'{"event":"now"}')
    assert pipe.read_all() == b'{"event":"now"}\n'


async def test_lines_beyond_the_cap_are_dropped_counted_and_reported(pipe: Pipe) -> None:
    pipe.fill()
    writer = LineWriter(pipe.w, cap=1000)
    writer.sink.tag = {"worker": "1"}
    for i in range(30):
        writer.msg(line(i))
    writer.hand_off()  # 10 lines fit the cap, 20 are dropped
    assert writer.sink.pending == 1000
    for i in range(30, 35):
        writer.msg(line(i))
    writer.hand_off()  # still over half the cap: all 5 dropped into the same gap
    assert writer.sink.pending == 1000

    pipe.resume()
    assert writer.flush(timeout_s=5.0)
    for i in range(35, 37):
        writer.msg(line(i))
    assert writer.flush(timeout_s=5.0)

    got = json_lines(pipe.stop())
    assert [x.get("i") for x in got] == [*range(10), None, 35, 36]
    warning = got[10]
    assert warning["event"] == "log_lines_dropped"
    assert warning["count"] == 25
    assert warning["bytes"] == 2500
    assert warning["level"] == "warning"
    assert warning["worker"] == "1"
    assert warning["cap_bytes"] == 1000


def test_flush_waits_for_a_slow_reader_to_take_everything(pipe: Pipe) -> None:
    pipe.fill()
    writer = LineWriter(pipe.w)
    pipe.resume(after_s=0.2)
    writer.sink.put([line(i, 199) + b"\n" for i in range(100)], 20000)
    assert writer.flush(timeout_s=5.0)
    assert writer.sink.pending == 0  # written: what is not read yet is in the pipe
    assert [x["i"] for x in json_lines(pipe.stop())] == list(range(100))


def test_flush_gives_up_after_its_timeout_then_at_once_while_nothing_moves(pipe: Pipe) -> None:
    pipe.fill()
    writer = LineWriter(pipe.w)
    writer.msg(b'{"event":"held"}')  # outside a loop: a flush that times out
    assert writer.sink.pending == 17
    assert not writer.flush(timeout_s=0.1)
    assert not writer.sink.drain(timeout_s=60.0)  # stuck: no second wait (the test would time out)
    pipe.resume()
    deadline = time.monotonic() + 5.0
    while writer.sink.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.sink.drain(timeout_s=60.0)  # the writer moved: waits again (here: done)
    assert pipe.stop().endswith(b'#{"event":"held"}\n')


def test_a_closed_pipe_ends_writing_silently(pipe: Pipe) -> None:
    pipe.fill()
    writer = LineWriter(pipe.w)
    writer.sink.put([b'{"event":"lost"}\n'], 17)
    os.close(pipe.r)
    pipe.r = os.open(os.devnull, os.O_RDONLY)  # for the fixture's close
    assert writer.flush(timeout_s=5.0)
    assert writer.sink.closed
    writer.msg(b'{"event":"after"}')
    assert writer.sink.pending == 0


def test_a_forked_child_writes_through_its_own_thread(pipe: Pipe) -> None:
    logs.event("before_fork")  # the parent's writer thread is running
    assert logs.WRITER.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            logs.WRITER.sink.fd = pipe.w
            logs.WRITER.msg(b'{"event":"from_child"}')
            code = 0 if logs.WRITER.flush(timeout_s=2.0) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pipe.read_all() == b'{"event":"from_child"}\n'
