"""Memory per in-flight stream for scripts/bench: long streams held open, RSS early and late."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time

import aiohttp
import uvloop
from benchproc import ERRORS, HEADERS, Procs, chat_body, note, rss_kb

HoldFigures = dict[str, float]


async def hold(url: str, args: argparse.Namespace, pid: int) -> HoldFigures:
    """Open n streams and read them all; sample RSS when the median stream has passed 10%
    and 75% of its chunks (or at the deadline), then close them all."""
    n, chunks = args.hold_streams, args.hold_chunks
    gate, seen, statuses, ended = asyncio.Semaphore(100), [0] * n, [], 0  # connect in waves
    idle = rss_kb(pid)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        nonlocal ended
        try:
            async with gate:
                r = await session.post(url, data=chat_body("gateway", True), headers=HEADERS)
            statuses.append(r.status)
            async with r:
                async for data in r.content.iter_any():
                    seen[i] += data.count(b"data:")
        except (aiohttp.ClientError, TimeoutError) as exc:
            ERRORS[f"stream memory: {type(exc).__name__}"] += 1
        finally:
            ended += 1

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=30)  # bounded waits
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        streams = asyncio.gather(*(one(session, i) for i in range(n)))
        marks: dict[str, tuple[float, float, float]] = {}  # name -> (rss KiB, median chunk, s)
        t0, deadline = time.monotonic(), time.monotonic() + args.hold_deadline
        try:
            for name, frac in (("early", 0.10), ("late", 0.75)):
                while time.monotonic() < deadline and ended < n:
                    if statistics.median(seen) >= frac * chunks:
                        break
                    await asyncio.sleep(0.1)
                marks[name] = (rss_kb(pid), statistics.median(seen), time.monotonic() - t0)
        finally:
            streams.cancel()  # every stream still open is closed
            with contextlib.suppress(asyncio.CancelledError):
                await streams
    ERRORS["stream memory: non-2xx"] += sum(s >= 300 for s in statuses)
    (ekb, echunk, es), (lkb, lchunk, ls) = marks["early"], marks["late"]
    return {
        "idle_kb": idle, "open": len(statuses), "early_kb": ekb, "early_chunk": echunk,
        "early_s": es, "late_kb": lkb, "late_chunk": lchunk, "late_s": ls,
    }  # fmt: skip


def run_hold(procs: Procs, args: argparse.Namespace) -> dict[str, HoldFigures]:
    """Bare, then the gateway, each alone on the slow fake."""
    note(
        f"stream memory: {args.hold_streams} streams of {args.hold_chunks:,} chunks "
        f"({args.hold_delay * 1000:.0f} ms apart) ..."
    )
    flags = ("--chunks", str(args.hold_chunks), "--chunk-delay", str(args.hold_delay))
    slow, out = procs.fake("hold", *flags), {}
    try:
        for name in ("bare", "gateway"):
            s = procs.bare(slow) if name == "bare" else procs.gateway(slow, args.workers)
            try:
                time.sleep(1.0)
                url = f"{s.url}/v1/chat/completions"
                out[name] = uvloop.run(hold(url, args, s.proc.pid))
            finally:
                procs.stop(s.proc)
    finally:
        procs.stop(slow.proc)
    return out


def report_hold(figs: dict[str, HoldFigures], args: argparse.Namespace) -> None:
    """RSS per stream early in the streams' life, and whether it grew by the late sample."""
    print(
        f"\nMemory per in-flight stream ({args.hold_streams} streams of {args.hold_chunks:,} "
        f"chunks, upstream {args.hold_delay * 1000:.0f} ms per chunk; RSS of the target, MiB; "
        "samples when the median stream has read 10% and 75% of its chunks)"
    )
    print(f"  {'target':8}{'idle':>7}{'open':>6}{'early':>8}{'at chunk':>10}{'late':>8}"
          f"{'at chunk':>10}{'KiB/stream':>12}{'late-early':>12}  grew")  # fmt: skip
    for name, f in figs.items():
        per = (f["early_kb"] - f["idle_kb"]) / max(f["open"], 1)
        grew_kb = f["late_kb"] - f["early_kb"]
        # bounded: late within 1 MiB or 10% of the streams' early footprint, whichever is more
        limit = max(1024.0, 0.1 * (f["early_kb"] - f["idle_kb"]))
        verdict = f"YES, {grew_kb / max(f['open'], 1):+.1f} KiB/stream" if grew_kb > limit else "no"
        print(
            f"  {name:8}{f['idle_kb'] / 1024:>7.1f}{f['open']:>6.0f}{f['early_kb'] / 1024:>8.1f}"
            f"{f['early_chunk']:>10,.0f}{f['late_kb'] / 1024:>8.1f}{f['late_chunk']:>10,.0f}"
            f"{per:>12.1f}{grew_kb / 1024:>+12.1f}  {verdict}"
        )
