"""Benchmark the gateway against the fake upstream directly and a bare aiohttp pass-through.

Fake upstream, scripts/bare_proxy.py and `gateway serve` run pinned to CPU 0, wrk and this
script's clients on CPU 1; targets are restarted and interleaved every round (see --help).
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import aiohttp
import orjson
import uvloop

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = str(ROOT / "venv" / "bin" / "gateway")
CHUNKS = 20  # content chunks per benchmark stream (plus role, finish and [DONE] events)
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
TARGETS = ("direct", "bare", "gateway")
LOADS = (("json", 1), ("json", 16), ("json", 64), ("sse", 1), ("sse", 16), ("sse", 64))
PIN = {0, 1} <= os.sched_getaffinity(0)
SERVER_CPU, CLIENT_CPU = 0, 1
HEADERS = {"Content-Type": "application/json"}
MESSAGES = [{"role": "user", "content": "Say hello"}]
Times = dict[str, list[list[float]]]  # target -> [first byte ms, last byte ms] per stream
Memory = dict[str, dict[str, int]]  # process -> figures (KiB, counts)
ERRORS: Counter[str] = Counter()  # every error any phase saw, by kind
GATEWAY_LOG: Counter[str] = Counter()  # access statuses and warnings of every gateway run
GATEWAY_PROCS: set[int] = set()  # processes seen in the gateway's tree


class BenchError(RuntimeError):
    pass


def chat_body(target: str, stream: bool) -> bytes:
    """The chat request; the fake itself is asked for the upstream model the gateway uses."""
    body = {"model": "bench-model" if target == "direct" else "bench", "messages": MESSAGES}
    return orjson.dumps({**body, "stream": True} if stream else body)


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if PIN else []


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:  # the process or thread has just exited
        return ""


def tree(pid: int) -> list[int]:
    """pid and all its descendants (the children of each of their threads), from /proc."""
    out, todo = [], [pid]
    while todo:
        out.append(p := todo.pop())
        tasks = Path(f"/proc/{p}/task").glob("*")
        todo += [int(c) for t in tasks for c in read(t / "children").split()]
    return out


def cpu_ticks(pid: int) -> int:
    """utime + stime (+ cutime + cstime of reaped children) of pid and its descendants."""
    stats = [read(f"/proc/{p}/stat") for p in tree(pid)]
    return sum(sum(map(int, s[s.rfind(")") + 2 :].split()[11:15])) for s in stats if s)


def rss_kb(pid: int) -> int:
    """VmRSS of pid and its descendants, in KiB."""
    found = [re.search(r"^VmRSS:\s+(\d+)", read(f"/proc/{p}/status"), re.M) for p in tree(pid)]
    return sum(int(m.group(1)) for m in found if m)


class Server(NamedTuple):
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


class Procs:
    """Every child this bench starts; stop() ends them (SIGTERM, then SIGKILL its own session)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.live: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, cmd: list[str], pattern: str) -> Server:
        log = self.tmp / f"{len(self.live)}-{time.monotonic_ns()}-{name}.log"
        with log.open("wb") as fh:  # a file, never a pipe nobody reads
            proc = subprocess.Popen(
                [*pinned(SERVER_CPU), *cmd], stdout=fh, stderr=fh, start_new_session=True
            )
        self.live.append(proc)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if m := re.search(pattern, log.read_text("utf-8", "replace")):
                return Server(proc, m.group(1), log)
            time.sleep(0.05)
        tail = log.read_text("utf-8", "replace")[-3000:]
        raise BenchError(f"{name} did not become ready (exit code {proc.poll()}):\n{tail}")

    def fake(self, name: str, *flags: str) -> Server:
        cmd = [GATEWAY, "fake-upstream", "--port", "0", "--name", name, *flags]
        return self.start(f"fake-{name}", cmd, r"listening on (http://\S+)")

    def bare(self, upstream: Server) -> Server:
        cmd = [sys.executable, str(ROOT / "scripts" / "bare_proxy.py"), "--upstream", upstream.url]
        return self.start("bare", cmd, r"listening on (http://\S+)")

    def gateway(self, upstream: Server, workers: int) -> Server:
        config = self.tmp / f"config-{time.monotonic_ns()}" / "gateway.toml"
        config.parent.mkdir()  # alone: the watcher watches the directory, not the log files
        config.write_text(
            '[server]\nlisten = "127.0.0.1:0"\naccess_log = true\nwatch = true\n'
            f'workers = {workers}\n\n[upstreams.up]\nprovider = "openai"\n'
            f'base_url = "{upstream.url}/v1"\nmodel = "bench-model"\n\n'
            '[routes.bench]\nstrategy = "latency"\ntiers = [{ up = 1 }]\n'
        )
        cmd = [GATEWAY, "serve", "--config", str(config)]
        return self.start("gateway", cmd, r'(?m)^(?=.*"event":"ready").*"address":"(http://[^"]+)"')

    def stop(self, *procs: subprocess.Popen[bytes]) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # the session start_new_session made for it
                p.wait(timeout=5)
            if p in self.live:
                self.live.remove(p)


def read_gateway_log(log: Path) -> None:
    """Count access statuses, warning/error events and non-JSON lines of one gateway log."""
    for line in log.read_bytes().splitlines():
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:
            GATEWAY_LOG[f"non-JSON line: {line[:100].decode('utf-8', 'replace')}"] += 1
            continue
        if ev.get("event") == "access":
            GATEWAY_LOG[f"access {ev.get('status')} {ev.get('failure') or ''}".rstrip()] += 1
        elif ev.get("level") in ("warning", "error"):
            GATEWAY_LOG[f"{ev.get('level')} {ev.get('event')}"] += 1


@dataclass
class Run:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx plus socket errors (connect, read, write, timeout)
    cpu_us: float  # CPU time of the target's process tree per completed request
    rss_kb: list[int]  # the target's RSS before, every 30 s during, and after the run


def wrk(s: Server, body: bytes, conns: int, secs: int, phase: str, lua: str = "post") -> Run:
    """One wrk run (1 thread, on the client CPU) with the target's CPU time and RSS."""
    cmd = [*pinned(CLIENT_CPU), "wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency"]
    cmd += ["--timeout", "5s", "-s", str(ROOT / "scripts" / "bench_wrk" / f"{lua}.lua")]
    env = {**os.environ, "BENCH_BODY": body.decode()}
    env["BENCH_STREAM_BODY"] = chat_body("gateway", True).decode()  # soak.lua's second body
    rss, before, stdout = [rss_kb(s.proc.pid)], cpu_ticks(s.proc.pid), b""
    cmd.append(f"{s.url}/v1/chat/completions")
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as p:
        try:
            for _ in range(secs // 30 + 3):
                try:
                    stdout = p.communicate(timeout=30)[0]  # output is kept over timeouts
                    break
                except subprocess.TimeoutExpired:
                    rss.append(rss_kb(s.proc.pid))
        finally:
            if p.poll() is None:
                p.kill()
    ticks = cpu_ticks(s.proc.pid) - before
    rss.append(rss_kb(s.proc.pid))
    line = next((x for x in stdout.splitlines() if x.startswith(b"BENCH ")), None)
    if line is None:
        raise BenchError(f"no summary line from wrk: {stdout[-2000:]!r}")
    w = orjson.loads(line[6:])
    sock = w["connect"] + w["read"] + w["write"] + w["timeout"]
    ERRORS[f"{phase}: non-2xx"] += w["status"]
    ERRORS[f"{phase}: socket errors"] += sock
    n, cpu = w["requests"], ticks * TICK_US / max(w["requests"], 1)
    rps = n / (w["duration_us"] / 1e6)
    return Run(n, rps, w["p50_us"] / 1000, w["p99_us"] / 1000, w["status"] + sock, cpu, rss)


def run_round(procs: Procs, rnd: int, args: argparse.Namespace, runs: dict[str, list[Run]]) -> None:
    fake = procs.fake("fast", "--chunks", str(CHUNKS))
    servers = {"direct": fake, "bare": procs.bare(fake)}
    servers["gateway"] = gw = procs.gateway(fake, args.workers)
    try:
        for name, s in servers.items():  # warm-up: connection pools, the latency strategy's EWMA
            for stream in (False, True):
                wrk(s, chat_body(name, stream), 16, 1, "warm-up")
        GATEWAY_PROCS.add(len(tree(gw.proc.pid)))
        order = TARGETS[rnd % 3 :] + TARGETS[: rnd % 3]  # who goes first rotates every round
        for kind, conns in LOADS:
            for name in order:
                body = chat_body(name, kind == "sse")
                r = wrk(servers[name], body, conns, args.duration, "load runs")
                runs.setdefault(f"{kind}/{conns}/{name}", []).append(r)
                note(
                    f"round {rnd + 1}: {kind:4} c={conns:<3} {name:8} {r.rps:9,.0f}/s  p50 "
                    f"{r.p50_ms:7.3f} ms  cpu {r.cpu_us:7.1f} us/req  errors {r.errors}"
                )
        GATEWAY_PROCS.add(len(tree(gw.proc.pid)))
    finally:
        procs.stop(*(s.proc for s in servers.values()))
    read_gateway_log(gw.log)


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
    """Open n streams, wait until each has its first byte, sample RSS, then close them all."""
    done, release, gate = Counter[str](), asyncio.Event(), asyncio.Semaphore(100)  # in waves

    async def one(session: aiohttp.ClientSession) -> None:
        r: aiohttp.ClientResponse | None = None
        try:
            async with gate:
                r = await session.post(url, data=chat_body("gateway", True), headers=HEADERS)
                if r.status != 200 or not await r.content.readany():
                    raise BenchError(f"status {r.status}")
                done["open"] += 1
            await release.wait()
        except (aiohttp.ClientError, OSError, BenchError) as exc:
            done[f"memory: {type(exc).__name__}"] += 1
        finally:
            if r is not None:
                r.close()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session, asyncio.TaskGroup() as tg:
        for _ in range(n):
            tg.create_task(one(session))
        for _ in range(300):  # up to 30 s (the fake's streams last 20 s)
            await asyncio.sleep(0.1)
            if done.total() >= n:
                break
        await asyncio.sleep(1.0)
        figures = {"open": done["open"], "open_kb": rss_kb(pid)}
        release.set()
    ERRORS.update({k: v for k, v in done.items() if k != "open"})
    ERRORS["memory: streams neither open nor failed in 30 s"] += n - done.total()
    return figures


def memory(procs: Procs, streams: int, workers: int) -> Memory:
    slow = procs.fake("slow", "--chunks", "40", "--chunk-delay", "0.5")  # 20 s per stream
    out: Memory = {}
    try:
        for name in ("bare", "gateway"):
            s = procs.bare(slow) if name == "bare" else procs.gateway(slow, workers)
            try:
                time.sleep(1.0)
                idle = rss_kb(s.proc.pid)
                held = uvloop.run(hold_streams(f"{s.url}/v1/chat/completions", streams, s.proc.pid))
                time.sleep(2.0)
                out[name] = {"idle_kb": idle, **held, "after_kb": rss_kb(s.proc.pid)}
            finally:
                procs.stop(s.proc)
    finally:
        procs.stop(slow.proc)
    return out


def table(title: str, rows: list[list[str]], left: int = 1) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n{title}")
    for r in rows:
        pairs = enumerate(zip(r, widths, strict=True))
        cells = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in pairs]
        print("  " + "  ".join(cells).rstrip())


def environment(args: argparse.Namespace) -> dict[str, str]:
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    libs = ", ".join(f"{p} {md.version(p)}" for p in ("aiohttp", "uvloop", "orjson", "structlog"))
    place = f"fake upstream, bare proxy, gateway on CPU {SERVER_CPU} (taskset); wrk and the bench"
    return {
        "versions": f"python {platform.python_version()}, {libs}, wrk {[*wrk_v.split(), '?'][1]}",
        "cpu": f"{cpu.group(1) if cpu else '?'}; {os.cpu_count()} CPUs; Linux {platform.release()}",
        "placement": f"{place}'s clients on CPU {CLIENT_CPU}" if PIN else "NOT pinned (< 2 CPUs)",
        "gateway": "1 upstream (openai -> fake), route bench: strategy=latency tiers=[{up=1}]; "
        f"access_log=true, watch=true, workers={args.workers}",
        "method": f"{args.rounds} round(s), {args.duration} s per wrk run (-t1); targets restarted "
        "and interleaved every round; medians over rounds; ratios and deltas paired per round",
    }


def report_loads(runs: dict[str, list[Run]]) -> dict[str, dict[str, float]]:
    """Print the CPU table and the throughput/latency table; return their figures."""
    stats: dict[str, dict[str, float]] = {}
    cpu = [["per", "c", "fake (direct)", "bare", "gateway", "gateway-bare", "per chunk"]]
    lat = [["load", "c", "target", "req/s", "ratio", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms"]]
    lat[0].append("errors")
    for kind, conns in LOADS:
        direct, bare = runs[f"{kind}/{conns}/direct"], runs[f"{kind}/{conns}/bare"]
        for name in TARGETS:
            rs = runs[f"{kind}/{conns}/{name}"]
            d, b = list(zip(rs, direct, strict=True)), zip(rs, bare, strict=True)
            f = stats[f"{kind}/{conns}/{name}"] = {
                "rps": med([r.rps for r in rs]),
                "ratio": med([r.rps / x.rps for r, x in d]),
                "p50_ms": med([r.p50_ms for r in rs]),
                "p99_ms": med([r.p99_ms for r in rs]),
                "added_p50_ms": med([r.p50_ms - x.p50_ms for r, x in d]),
                "added_p99_ms": med([r.p99_ms - x.p99_ms for r, x in d]),
                "cpu_us": med([r.cpu_us for r in rs]),
                "minus_bare_us": med([r.cpu_us - x.cpu_us for r, x in b]),
                "errors": sum(r.errors for r in rs),
            }
            first = name == "direct"
            lat.append([kind if first else "", str(conns) if first else "", name])
            lat[-1] += [f"{f['rps']:,.0f}", *(f"{f[k]:.3f}" for k in ("ratio", "p50_ms", "p99_ms"))]
            added = [f"{f[k]:+.3f}" for k in ("added_p50_ms", "added_p99_ms")]
            lat[-1] += [*(["-", "-"] if first else added), f"{f['errors']:.0f}"]
        extra = stats[f"{kind}/{conns}/gateway"]["minus_bare_us"]
        cpu.append([f"{CHUNKS}-chunk stream" if kind == "sse" else "JSON request", str(conns)])
        cpu[-1] += [f"{stats[f'{kind}/{conns}/{n}']['cpu_us']:.0f}" for n in TARGETS]
        cpu[-1] += [f"{extra:.0f}", f"{extra / CHUNKS:.1f}" if kind == "sse" else "-"]
    table("CPU time per request, us (utime+stime of the process and its children / requests)", cpu)
    table("Throughput and latency (wrk; ratio = target/direct; + = added to direct)", lat, 3)
    return stats


def print_rest(args: argparse.Namespace, times: Times, mem: Memory, soaked: Run | None) -> None:
    rows = [["target", "first byte ms", "added ms", "last byte ms", "streams"]]
    for n, ts in times.items():
        added = med([t[0] - d[0] for t, d in zip(ts, times["direct"], strict=True)])
        firsts, lasts = [t[0] for t in ts], [t[1] for t in ts]
        rows.append([n, f"{med(firsts):.3f}", f"{added:+.3f}", f"{med(lasts):.2f}", str(len(ts))])
    table("Streaming time to first byte (5 chunks, upstream waits 50 ms each; medians)", rows)
    rows = [["process", "idle MiB", "open streams", "with them MiB", "KiB/stream", "after MiB"]]
    for n, m in mem.items():
        per = (m["open_kb"] - m["idle_kb"]) / max(m["open"], 1)
        rows.append([n, f"{m['idle_kb'] / 1024:.1f}", f"{m['open']}/{args.streams}"])
        rows[-1] += [f"{m['open_kb'] / 1024:.1f}", f"{per:.1f}", f"{m['after_kb'] / 1024:.1f}"]
    table("Resident memory (VmRSS, process and children; 'after' = 2 s after closing)", rows)
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
    bad = sum(v for k, v in GATEWAY_LOG.items() if not k.startswith("access 200"))
    print(f"  zero errors: {'NO' if any(ERRORS.values()) else 'yes'} (wrk and the bench's clients);"
          f" gateway log lines other than 'access 200': {bad}")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description="Benchmark the gateway (see scripts/bench.py).")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s runs")
    p.add_argument("--workers", type=int, default=1, help="[server] workers of the gateway")
    p.add_argument("--streams", type=int, default=1000, help="open streams for the memory figure")
    p.add_argument("--soak", type=int, default=0, help="seconds of mixed load (max 900; 0: skip)")
    p.add_argument("--json", type=Path, help="also write the figures as JSON to this file")
    args = p.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 2
    args.soak = max(0, min(args.soak, 900))
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the children inherit it
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    for sig in (signal.SIGINT, signal.SIGTERM):  # even if started with SIGINT ignored (`&`)
        signal.signal(sig, signal.default_int_handler)  # KeyboardInterrupt: finally runs
    if PIN:
        os.sched_setaffinity(0, {CLIENT_CPU})
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        procs = Procs(Path(tmp))
        try:
            return run_all(procs, args)
        finally:
            procs.stop(*procs.live)


def run_all(procs: Procs, args: argparse.Namespace) -> int:
    started, env = time.monotonic(), environment(args)
    runs: dict[str, list[Run]] = {}
    for rnd in range(args.rounds):
        run_round(procs, rnd, args, runs)
    note("time to first byte (upstream waits 50 ms between chunks) ...")
    slow = procs.fake("ttfb", "--chunks", "5", "--chunk-delay", "0.05")
    servers = [slow, procs.bare(slow), procs.gateway(slow, args.workers)]
    try:
        urls = {n: s.url for n, s in zip(TARGETS, servers, strict=True)}
        times = uvloop.run(ttfb(urls, 8 if args.quick else 20))
    finally:
        procs.stop(*(s.proc for s in servers))
    note(f"memory with {args.streams} open streams ...")
    mem = memory(procs, args.streams, args.workers)
    soaked = None
    if args.soak:  # mixed load (soak.lua: 3 JSON : 1 stream), RSS sampled every 30 s
        note(f"soak for {args.soak} s ...")
        fake = procs.fake("soak", "--chunks", str(CHUNKS))
        gw = procs.gateway(fake, args.workers)
        try:
            soaked = wrk(gw, chat_body("gateway", False), 16, args.soak, "soak", "soak")
        finally:
            procs.stop(fake.proc, gw.proc)
    print("llm-gateway benchmark\n" + "\n".join(f"  {k:10} {v}" for k, v in env.items()))
    stats = report_loads(runs)
    print_rest(args, times, mem, soaked)
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")
    if args.json:
        doc = {"environment": env, "loads": stats, "ttfb_ms": times, "memory": mem, "soak": soaked}
        doc |= {"runs": {k: [asdict(r) for r in v] for k, v in runs.items()}, "errors": ERRORS}
        doc |= {"gateway_log": GATEWAY_LOG, "gateway_processes": sorted(GATEWAY_PROCS)}
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return 0 if not any(ERRORS.values()) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted; children stopped", file=sys.stderr)
        sys.exit(130)
