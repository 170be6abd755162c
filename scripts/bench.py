"""Benchmark the gateway against the fake upstream directly and a bare aiohttp pass-through.

Fake upstream, scripts/bare_proxy.py and `gateway serve` run pinned to CPU 0, wrk and this
script's clients on CPU 1; targets are restarted and interleaved every round (see --help).
The phases live in their own modules: bench_growth (bodies and stream lengths), bench_streams
(memory per in-flight stream), bench_wait (waits on the request path, a slow log reader) and
bench_workers (one worker beside two).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata as md
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import aiohttp
import orjson
import uvloop
from bench_args import parse_args
from bench_growth import report_growth, run_growth
from bench_streams import report_hold, run_hold
from bench_wait import report_wait, run_wait
from bench_workers import report_workers, run_workers
from benchproc import (
    CHUNKS,
    ERRORS,
    GATEWAY_LOG,
    GATEWAY_PROCS,
    HEADERS,
    LOADS,
    PIN,
    TARGETS,
    BenchError,
    Mem,
    Procs,
    Run,
    Times,
    chat_body,
    med,
    note,
    read,
    rss_kb,
    tree,
    wrk,
)


def run_round(procs: Procs, rnd: int, args: argparse.Namespace, runs: dict[str, list[Run]]) -> None:
    fake = procs.fake("fast", "--chunks", str(CHUNKS))
    servers = {"direct": fake, "bare": procs.bare(fake)}
    servers["gateway"] = gw = procs.gateway(fake, args.workers, key=args.key)
    for name, s in servers.items():  # warm-up: connection pools, the latency strategy's EWMA
        for stream in (False, True):
            wrk(s, chat_body(name, stream), 16, 1, "warm-up")
    order = TARGETS[rnd % 3 :] + TARGETS[: rnd % 3]  # who goes first rotates every round
    for kind, conns in LOADS:
        for name in order:
            r = wrk(servers[name], chat_body(name, kind == "sse"), conns, args.duration, "runs")
            runs.setdefault(f"{kind}/{conns}/{name}", []).append(r)
            note(
                f"round {rnd + 1}: {kind:4} c={conns:<3} {name:8} {r.rps:9,.0f}/s  p50 "
                f"{r.p50_ms:7.3f} ms  cpu {r.cpu_us:7.1f} us/req  errors {r.errors}"
            )
    GATEWAY_PROCS.add(len(tree(gw.proc.pid)))
    procs.stop(*(s.proc for s in servers.values()))  # errors: main() stops them all
    read_gateway_log(gw.log)


def read_gateway_log(log: Path) -> None:
    """Count the access statuses, warnings, errors and stderr lines of one gateway run."""
    for line in log.read_bytes().splitlines():
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:  # stderr (stdlib logging) or a line cut by a kill
            ev = {"event": line[:90].decode("utf-8", "replace")}
        if ev.get("event") == "access":
            GATEWAY_LOG[f"access {ev.get('status')} {ev.get('failure') or ''}".rstrip()] += 1
        elif ev.get("level") in ("warning", "error", None):
            GATEWAY_LOG[f"{ev.get('level', 'stderr')}: {ev.get('event')}"] += 1


async def ttfb(urls: dict[str, str], n: int) -> Times:
    """Sequential streams, interleaved over targets: [first body byte, last byte] in ms."""
    out: Times = {name: [] for name in urls}
    async with aiohttp.ClientSession() as session:
        for i in range(n + 2):  # the first two only warm the connections up
            for name in list(urls) if i % 2 == 0 else list(reversed(urls)):
                t0 = time.perf_counter()
                url, body = f"{urls[name]}/v1/chat/completions", chat_body(name, True)
                async with session.post(url, data=body, headers=HEADERS) as r:
                    await r.content.readany()
                    t1 = time.perf_counter()
                    while await r.content.readany():
                        pass
                    ERRORS["ttfb: non-2xx"] += r.status >= 300
                if i >= 2:
                    out[name].append([(t1 - t0) * 1e3, (time.perf_counter() - t0) * 1e3])
    return out


async def hold_streams(url: str, n: int, pid: int) -> dict[str, int]:
    """RSS at idle, with n streams open (first byte received by each), and after closing them."""
    gate, idle = asyncio.Semaphore(100), rss_kb(pid)  # connect in waves: backlogs are finite

    async def one(session: aiohttp.ClientSession) -> aiohttp.ClientResponse:
        async with gate:
            r = await session.post(url, data=chat_body("gateway", True), headers=HEADERS)
            if r.status != 200 or not await r.content.readany():
                r.close()
                raise BenchError(f"status {r.status}")
            return r

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=30)  # bounded waits
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        got = await asyncio.gather(*(one(session) for _ in range(n)), return_exceptions=True)
        opened = [r for r in got if isinstance(r, aiohttp.ClientResponse)]
        await asyncio.sleep(1.0)
        figures = {"idle_kb": idle, "open": len(opened), "open_kb": rss_kb(pid)}
        for r in opened:
            r.close()
    ERRORS.update(f"memory: {type(e).__name__}" for e in got if isinstance(e, BaseException))
    await asyncio.sleep(2.0)
    return {**figures, "after_kb": rss_kb(pid)}


def environment(args: argparse.Namespace) -> dict[str, str]:
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    cpu = re.search(r"^model name\s*:\s*(.*)$", read("/proc/cpuinfo"), re.M)
    libs = ", ".join(f"{p} {md.version(p)}" for p in ("aiohttp", "uvloop", "orjson", "structlog"))
    place = "fake upstream, bare proxy, gateway on CPU 0 (taskset); wrk, bench clients on CPU 1"
    return {
        "versions": f"python {platform.python_version()}, {libs}, wrk {[*wrk_v.split(), '?'][1]}",
        "cpu": f"{cpu.group(1) if cpu else '?'}; {os.cpu_count()} CPUs; Linux {platform.release()}",
        "placement": place if PIN else "NOT pinned (fewer than 2 CPUs)",
        "gateway": "1 upstream (openai -> fake), route bench: strategy=latency tiers=[{up=1}]; "
        f"access_log=true, watch=true, workers={args.workers}",
        "method": f"{args.rounds} round(s), {args.duration} s per wrk run (-t1); targets restarted "
        "and interleaved every round; medians over rounds; ratios and deltas paired per round",
    }


def report_loads(runs: dict[str, list[Run]]) -> dict[str, dict[str, float]]:
    """Print the CPU table and the throughput/latency table; return their figures."""
    stats: dict[str, dict[str, float]] = {}
    for key, rs in runs.items():
        load = key.rsplit("/", 1)[0]
        d = list(zip(rs, runs[f"{load}/direct"], strict=True))
        b = zip(rs, runs[f"{load}/bare"], strict=True)
        stats[key] = {
            "rps": med([r.rps for r in rs]),
            "ratio": med([r.rps / x.rps for r, x in d]),
            "p50_ms": med([r.p50_ms for r in rs]),
            "p99_ms": med([r.p99_ms for r in rs]),
            "added_p50_ms": med([r.p50_ms - x.p50_ms for r, x in d]),
            "added_p99_ms": med([r.p99_ms - x.p99_ms for r, x in d]),
            "cpu_us": med([r.cpu_us for r in rs]),
            # The share of one CPU the target used: far below 1 while its req/s trail bare's
            # means it waited (a pool or semaphore limit, a timer, a blocking write, a lock).
            "busy": med([r.cpu_us * r.rps / 1e6 for r in rs]),
            "minus_bare_us": med([r.cpu_us - x.cpu_us for r, x in b]),
            "errors": sum(r.errors for r in rs),
        }
    print("\nCPU time per request, us (utime+stime of the process and its children / requests)")
    # per chunk: the stream's cost above bare, less the per-request cost above bare (same c).
    print("  per               c  fake (direct)     bare  gateway  gateway-bare  per chunk")
    for kind, conns in LOADS:
        f = {n: stats[f"{kind}/{conns}/{n}"] for n in TARGETS}
        extra, sse = f["gateway"]["minus_bare_us"], kind == "sse"
        per_chunk = (extra - stats[f"json/{conns}/gateway"]["minus_bare_us"]) / CHUNKS
        print(
            f"  {f'{CHUNKS}-chunk stream' if sse else 'JSON request':16}{conns:>3}"
            f"{f['direct']['cpu_us']:>15.0f}{f['bare']['cpu_us']:>9.0f}{f['gateway']['cpu_us']:>9.0f}"
            f"{extra:>14.0f}{f'{per_chunk:.1f}' if sse else '-':>11}"
        )
    print(
        "\nThroughput and latency (wrk -t1; SSE latency = whole stream; ratio = target/direct;"
        " busy = CPU used / wall time; the fake upstream shares CPU 0, so --wait also shows"
        " its share and what CPU 0 left idle: a target that trails bare with CPU 0 idle waits)"
    )
    print(f"  load{'c':>4}  {'target':8}{'req/s':>9}{'ratio':>7}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'+p50 ms':>10}{'+p99 ms':>10}{'errors':>8}{'busy':>6}")  # fmt: skip
    for kind, conns in LOADS:
        for n in TARGETS:
            g, first = stats[f"{kind}/{conns}/{n}"], n == "direct"
            add = (
                ["-", "-"] if first else [f"{g[k]:+.3f}" for k in ("added_p50_ms", "added_p99_ms")]
            )
            print(
                f"  {kind if first else '':4}{conns if first else '':>4}  {n:8}{g['rps']:>9,.0f}"
                f"{g['ratio']:>7.3f}{g['p50_ms']:>9.3f}{g['p99_ms']:>9.3f}{add[0]:>10}{add[1]:>10}"
                f"{g['errors']:>8.0f}{g['busy']:>6.2f}"
            )
    return stats


def print_rest(args: argparse.Namespace, times: Times, mem: Mem, soaked: Run | None) -> None:
    print("\nStreaming time to first byte (5 chunks, upstream waits 50 ms each; medians)")
    print(f"  {'target':8}{'first byte ms':>15}{'added ms':>10}{'last byte ms':>14}{'streams':>9}")
    for n, ts in times.items():
        added = med([t[0] - d[0] for t, d in zip(ts, times["direct"], strict=True)])
        first, last = med([t[0] for t in ts]), med([t[1] for t in ts])
        print(f"  {n:8}{first:>15.3f}{added:>+10.3f}{last:>14.2f}{len(ts):>9}")
    print("\nResident memory (VmRSS of the process and its children, MiB; after: 2 s after)")
    print(f"  {'process':8}{'idle':>6}{f'{args.streams} streams open':>20}{'with them':>11}"
          f"{'KiB/stream':>12}{'after':>7}")  # fmt: skip
    for n, m in mem.items():
        per = (m["open_kb"] - m["idle_kb"]) / max(m["open"], 1)
        print(f"  {n:8}{m['idle_kb'] / 1024:>6.1f}{m['open']:>20}{m['open_kb'] / 1024:>11.1f}"
              f"{per:>12.1f}{m['after_kb'] / 1024:>7.1f}")  # fmt: skip
    if soaked is not None:
        rss = [kb / 1024 for kb in soaked.rss_kb]
        print(f"\nSoak ({args.soak} s, 3 JSON : 1 stream, c=16): {soaked.requests:,} requests, "
              f"{soaked.rps:,.0f}/s; gateway RSS MiB start {rss[0]:.1f}, end {rss[-1]:.1f}, max "
              f"{max(rss):.1f}, growth {rss[-1] - rss[0]:+.1f} ({len(rss)} samples)")  # fmt: skip
    procs = ", ".join(map(str, sorted(GATEWAY_PROCS)))
    print(f"\nGateway: {procs} process(es) in its tree with workers={args.workers}; log lines:")
    print("\n".join(f"  {k}: {v:,}" for k, v in sorted(GATEWAY_LOG.items())))
    print("\nErrors (every wrk run, the TTFB and memory clients):")
    print("\n".join(f"  {k}: {v}" for k, v in sorted(ERRORS.items())))
    bad = sum(v for k, v in GATEWAY_LOG.items() if k != "access 200")
    print(f"  zero errors: {'NO' if any(ERRORS.values()) else 'yes'} (wrk and the bench's clients);"
          f" gateway log lines other than 'access 200': {bad}")  # fmt: skip


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (Debian/Ubuntu: apt-get install wrk)", file=sys.stderr)
        return 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the children inherit it
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    for sig in (signal.SIGINT, signal.SIGTERM):  # even if started with SIGINT ignored (`&`)
        signal.signal(sig, signal.default_int_handler)  # KeyboardInterrupt: finally runs
    if PIN:
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        procs = Procs(Path(tmp))
        try:
            return run_all(procs, args)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("bench: interrupted; stopping its processes", file=sys.stderr)
            return 130
        finally:
            procs.stop(*procs.live)


def run_all(procs: Procs, args: argparse.Namespace) -> int:
    started, env = time.monotonic(), environment(args)
    if not args.core:
        env["method"] = (
            f"{args.phase_rounds} round(s) per phase, {args.phase_duration} s per wrk run (-t1); "
            "targets restarted and interleaved every round; medians over rounds"
        )
        print("llm-gateway benchmark\n" + "\n".join(f"  {k:10} {v}" for k, v in env.items()))
        return run_phases(procs, args, {"environment": env}, started)
    runs: dict[str, list[Run]] = {}
    for rnd in range(args.rounds):
        run_round(procs, rnd, args, runs)
    note("time to first byte (upstream waits 50 ms between chunks) ...")
    slow = procs.fake("ttfb", "--chunks", "5", "--chunk-delay", "0.05")
    servers = [slow, procs.bare(slow), procs.gateway(slow, args.workers)]
    urls = {n: s.url for n, s in zip(TARGETS, servers, strict=True)}
    times = uvloop.run(ttfb(urls, 8 if args.quick else 20))
    procs.stop(*(s.proc for s in servers))  # on errors, main() stops every child
    note(f"memory with {args.streams} open streams ...")
    slow, mem = procs.fake("slow", "--chunks", "40", "--chunk-delay", "0.5"), Mem()  # 20 s each
    for name in ("bare", "gateway"):
        s = procs.bare(slow) if name == "bare" else procs.gateway(slow, args.workers)
        time.sleep(1.0)
        mem[name] = uvloop.run(
            hold_streams(f"{s.url}/v1/chat/completions", args.streams, s.proc.pid)
        )
        procs.stop(s.proc)
    procs.stop(slow.proc)
    soaked = None
    if args.soak:  # mixed load (soak.lua: 3 JSON : 1 stream), RSS sampled every 30 s
        note(f"soak for {args.soak} s ...")
        fake = procs.fake("soak", "--chunks", str(CHUNKS))
        gw = procs.gateway(fake, args.workers)
        soaked = wrk(gw, chat_body("gateway", False), 16, args.soak, "soak", "soak")
        procs.stop(fake.proc, gw.proc)
        read_gateway_log(gw.log)
    print("llm-gateway benchmark\n" + "\n".join(f"  {k:10} {v}" for k, v in env.items()))
    stats = report_loads(runs)
    print_rest(args, times, mem, soaked)
    doc = {"environment": env, "loads": stats, "ttfb_ms": times, "memory": mem, "soak": soaked}
    doc |= {"runs": {k: [asdict(r) for r in v] for k, v in runs.items()}}
    doc |= {"gateway_log": GATEWAY_LOG, "gateway_processes": sorted(GATEWAY_PROCS)}
    return run_phases(procs, args, doc, started)


def run_phases(procs: Procs, args: argparse.Namespace, doc: dict[str, object], t0: float) -> int:
    """The phases asked for (growth, stream memory, waits, workers), each printed when done."""
    if "growth" in args.phases:
        note("growth: bodies of 1 KB-10 MB, streams of 20-2,000 chunks ...")
        doc["growth"] = report_growth(run_growth(procs, args), args)
    if "stream_memory" in args.phases:
        held = run_hold(procs, args)
        report_hold(held, args)
        doc["stream_memory"] = held
    if "wait" in args.phases:
        note("waits: c=64 and c=256, then a slow log reader ...")
        doc["wait"] = report_wait(*run_wait(procs, args), args)
    if "workers_compare" in args.phases:
        note("workers: 1 and 2 ...")
        doc["workers"] = report_workers(run_workers(procs, args), args)
    if args.phases:
        print("\nErrors (every wrk run and the bench's clients, the phases included):")
        print("\n".join(f"  {k}: {v}" for k, v in sorted(ERRORS.items())))
        print(f"  zero errors: {'NO' if any(ERRORS.values()) else 'yes'}")
    print(f"\n(bench took {time.monotonic() - t0:.0f} s)")
    if args.json:
        doc["errors"] = ERRORS
        opts = orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS  # per-worker ticks are keyed by PID
        args.json.write_bytes(orjson.dumps(doc, option=opts))
    return 0 if not any(ERRORS.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
