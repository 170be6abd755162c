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
SERVER_CPU, CLIENT_CPU = (["taskset", "-c", c] if PIN else [] for c in "01")
HEADERS = {"Content-Type": "application/json"}
MESSAGES = [{"role": "user", "content": "Say hello"}]
Times = dict[str, list[list[float]]]  # target -> [first byte ms, last byte ms] per stream
Mem = dict[str, dict[str, int]]  # process -> RSS figures (KiB) and open streams
ERRORS: Counter[str] = Counter()  # every error that wrk or the bench's clients saw, by kind
GATEWAY_LOG: Counter[str] = Counter()  # access statuses and warnings of every gateway run
GATEWAY_PROCS: set[int] = set()  # how many processes the gateway's tree had


class BenchError(RuntimeError):
    """A phase of the benchmark could not run."""


def chat_body(target: str, stream: bool) -> bytes:
    """The chat request; the fake itself is asked for the upstream model the gateway uses."""
    body = {"model": "bench-model" if target == "direct" else "bench", "messages": MESSAGES}
    return orjson.dumps({**body, "stream": True} if stream else body)


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
        log = self.tmp / f"{time.monotonic_ns()}-{name}.log"
        with log.open("wb") as fh:  # a file, never a pipe nobody reads
            p = subprocess.Popen([*SERVER_CPU, *cmd], stdout=fh, stderr=fh, start_new_session=True)
        self.live.append(p)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and p.poll() is None:
            if m := re.search(pattern, log.read_text("utf-8", "replace")):
                return Server(p, m.group(1), log)
            time.sleep(0.05)
        tail = log.read_text("utf-8", "replace")[-3000:]
        raise BenchError(f"{name} did not become ready (exit code {p.poll()}):\n{tail}")

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
    script, url = ROOT / "scripts" / "bench_wrk" / f"{lua}.lua", f"{s.url}/v1/chat/completions"
    cmd = [*CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "5s"]
    cmd += ["-s", str(script), url]
    env = {**os.environ, "BENCH_BODY": body.decode()}
    env["BENCH_STREAM_BODY"] = chat_body("gateway", True).decode()  # soak.lua's second body
    rss, before, stdout = [rss_kb(s.proc.pid)], cpu_ticks(s.proc.pid), b""
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
    print("\nThroughput and latency (wrk -t1; SSE latency = whole stream; ratio = target/direct)")
    print(f"  load{'c':>4}  {'target':8}{'req/s':>9}{'ratio':>7}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'+p50 ms':>10}{'+p99 ms':>10}{'errors':>8}")  # fmt: skip
    for kind, conns in LOADS:
        for n in TARGETS:
            g, first = stats[f"{kind}/{conns}/{n}"], n == "direct"
            add = (
                ["-", "-"] if first else [f"{g[k]:+.3f}" for k in ("added_p50_ms", "added_p99_ms")]
            )
            print(
                f"  {kind if first else '':4}{conns if first else '':>4}  {n:8}{g['rps']:>9,.0f}"
                f"{g['ratio']:>7.3f}{g['p50_ms']:>9.3f}{g['p99_ms']:>9.3f}{add[0]:>10}{add[1]:>10}"
                f"{g['errors']:>8.0f}"
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
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")
    if args.json:
        doc = {"environment": env, "loads": stats, "ttfb_ms": times, "memory": mem, "soak": soaked}
        doc |= {"runs": {k: [asdict(r) for r in v] for k, v in runs.items()}, "errors": ERRORS}
        doc |= {"gateway_log": GATEWAY_LOG, "gateway_processes": sorted(GATEWAY_PROCS)}
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return 0 if not any(ERRORS.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
