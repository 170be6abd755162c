"""Wait phase of scripts/bench: req/s beside CPU use at high concurrency; a slow log reader."""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

from benchproc import CHUNKS, PIN, Procs, Run, Server, chat_body, med, note, wrk

WAIT_LOADS = (64, 256)
SLOW_READ = 4096  # bytes the slow reader takes from the gateway's stdout every 100 ms
WaitRuns = dict[str, list[Run]]  # "c/target" -> one run per round


class SlowReader:
    """Reads a pipe fast until slow() is called, then SLOW_READ bytes every 100 ms, appending
    what it reads to a log file; ends at end of file (the writer has exited)."""

    def __init__(self, log: Path) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self.log, self.bytes, self.slowed = log, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, name="slow-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.log.open("ab") as fh:
            while data := os.read(self.read_fd, SLOW_READ if self.slowed.is_set() else 1 << 16):
                fh.write(data)
                fh.flush()
                self.bytes += len(data)
                if self.slowed.is_set():
                    time.sleep(0.1)
        os.close(self.read_fd)

    def slow(self, on: bool = True) -> None:
        if on:
            self.slowed.set()
        else:
            self.slowed.clear()

    def close_writer(self) -> None:
        """Close this process's copy of the write end (the child holds its own)."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def join(self) -> None:
        self.thread.join(timeout=15)


def slow_pipe_run(procs: Procs, fake: Server, args: argparse.Namespace) -> tuple[Run, int, Path]:
    """The gateway with stdout on a pipe read slowly: one JSON c=64 run."""
    log = procs.log_path("gateway-slowpipe")
    reader = SlowReader(log)
    try:
        gw = procs.gateway(fake, args.workers, log=log, stdout=reader.write_fd)
    finally:
        reader.close_writer()
    try:
        wrk(gw, chat_body("gateway", False), 16, 1, "wait warm-up")
        reader.slow()
        body = chat_body("gateway", False)
        run = wrk(gw, body, 64, args.phase_duration, "wait slow pipe", upstream=fake)
    finally:
        reader.slow(False)  # let a blocked writer drain so that it can stop
        procs.stop(gw.proc)
        reader.join()
    return run, reader.bytes, log


def run_wait(procs: Procs, args: argparse.Namespace) -> tuple[WaitRuns, list[tuple[Run, int]]]:
    """Interleaved rounds of bare and gateway at c=64 and c=256, then the slow-pipe run."""
    runs: WaitRuns = {}
    slow: list[tuple[Run, int]] = []
    for rnd in range(args.phase_rounds):
        fake = procs.fake("wait", "--chunks", str(CHUNKS))
        servers = {"bare": procs.bare(fake), "gateway": procs.gateway(fake, args.workers)}
        try:
            for s in servers.values():
                wrk(s, chat_body("gateway", False), 16, 1, "wait warm-up")
            order = ("bare", "gateway") if rnd % 2 == 0 else ("gateway", "bare")
            for conns in WAIT_LOADS:
                for name in order:
                    body = chat_body(name, False)
                    r = wrk(servers[name], body, conns, args.phase_duration, "wait", upstream=fake)
                    runs.setdefault(f"{conns}/{name}", []).append(r)
                    note(f"wait round {rnd + 1}: c={conns:<3} {name:8} {r.rps:8,.0f}/s  "
                         f"cpu {r.cpu_us:7.1f} us/req  busy {busy(r):.2f}")  # fmt: skip
            procs.stop(*(s.proc for s in servers.values()))
            run, nbytes, _ = slow_pipe_run(procs, fake, args)
            slow.append((run, nbytes))
            note(f"wait round {rnd + 1}: c=64  gateway, stdout to a slow pipe {run.rps:8,.0f}/s  "
                 f"busy {busy(run):.2f}")  # fmt: skip
        finally:
            procs.stop(fake.proc, *(s.proc for s in servers.values()))
    return runs, slow


def busy(r: Run) -> float:
    """The share of one CPU the target used during the run."""
    return r.cpu_us * r.rps / 1e6


def row(rs: list[Run], ref: list[Run]) -> dict[str, float]:
    """Medians of one target's runs; `ref`: the runs its req/s are paired with."""
    return {
        "rps": med([r.rps for r in rs]),
        "to_ref": med([r.rps / b.rps for r, b in zip(rs, ref, strict=True)]),
        "cpu_us": med([r.cpu_us for r in rs]),
        "busy": med([busy(r) for r in rs]),
        "fake": med([r.upstream_cpu_s / r.secs for r in rs]),
        # CPU 0 (target and fake upstream) idle: > ~0.2 while req/s trail bare's means a wait;
        # other: what the rest of the machine (and the hypervisor) took of CPU 0
        "idle": med([r.cpu0_idle_s / r.secs for r in rs]),
        "other": med(
            [max(0.0, 1 - busy(r) - (r.upstream_cpu_s + r.cpu0_idle_s) / r.secs) for r in rs]
        ),
        "p99_ms": med([r.p99_ms for r in rs]),
        "errors": sum(r.errors for r in rs),
    }


def print_row(conns: int, label: str, f: dict[str, float]) -> None:
    other, idle = (f"{f['other']:.2f}", f"{f['idle']:.2f}") if PIN else ("-", "-")
    print(f"  {conns:>4}  {label:31}{f['rps']:>8,.0f}{f['to_ref']:>8.2f}{f['cpu_us']:>7.0f}"
          f"{f['busy']:>6.2f}{f['fake']:>6.2f}{other:>6}{idle:>6}"
          f"{f['p99_ms']:>9.1f}{f['errors']:>7.0f}")  # fmt: skip


def report_wait(
    runs: WaitRuns, slow: list[tuple[Run, int]], args: argparse.Namespace
) -> dict[str, object]:
    print(
        f"\nWaits on the request path (JSON, wrk -t1, {args.phase_rounds} round(s) of "
        f"{args.phase_duration} s; shares of CPU 0, where both servers run: busy = the "
        "target's, fake = the fake upstream's, other = other work's, idle = unused; a target "
        "that trails bare's req/s while CPU 0 is idle is waiting, not computing; a high other "
        "means a busy machine: the waiting target's share went to other work)"
    )
    print(f"  {'c':>4}  {'target':31}{'req/s':>8}{'to bare':>8}{'us/req':>7}{'busy':>6}"
          f"{'fake':>6}{'other':>6}{'idle':>6}{'p99 ms':>9}{'errors':>7}")  # fmt: skip
    out: dict[str, object] = {}
    for conns in WAIT_LOADS:
        for name in ("bare", "gateway"):
            out[f"{conns}/{name}"] = f = row(runs[f"{conns}/{name}"], runs[f"{conns}/bare"])
            print_row(conns, name, f)
    rs = [r for r, _ in slow]
    f = row(rs, runs["64/bare"])
    print_row(64, "gateway, stdout on a slow pipe", f)
    to_file = med([r.rps / g.rps for r, g in zip(rs, runs["64/gateway"], strict=True)])
    read = sum(n for _, n in slow)
    out["64/gateway-slow-pipe"] = {**f, "to_gateway_file": to_file, "read_bytes": read}
    # Waiting: req/s fell and so did the CPU the gateway used (a waiting loop's share of CPU 0
    # goes idle, or to other work on a busy machine), unlike a gateway starved of CPU.
    used = f["busy"] / med([busy(r) for r in runs["64/gateway"]])
    print(
        f"  slow pipe: the reader takes {SLOW_READ // 1024} KiB every 100 ms "
        f"({SLOW_READ * 10 // 1024} KiB/s; read {read / 1024:,.0f} KiB in all); "
        f"req/s {to_file:.2f}x and CPU used {used:.2f}x the gateway logging to a file"
    )
    stalled = to_file < 0.8 and used < 0.8
    print("  => a slow log reader stalls requests (log writes wait on the request path)" if stalled
          else "  => a slow log reader does not stall requests")  # fmt: skip
    return out
