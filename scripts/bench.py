"""Benchmark the gateway against the fake upstream directly and a bare aiohttp pass-through.

Real processes (fake upstream, scripts/bare_proxy.py, `gateway serve`) run pinned to CPU 0;
wrk and this script's aiohttp clients run on CPU 1. Targets are restarted and interleaved
every round; the report gives medians over rounds and ratios paired per round: CPU time per
request, throughput, added latency, streaming time to first byte, memory with many open
streams, errors. Usage: scripts/bench [--quick] [--rounds N] [--duration S] [--json PATH].
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
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = str(ROOT / "venv" / "bin" / "gateway")
LUA = ROOT / "scripts" / "bench_wrk"
CHUNKS = 20  # content chunks per benchmark stream (plus role, finish and [DONE] events)
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
TARGETS = ("direct", "bare", "gateway")
LOADS = (("json", 1), ("json", 16), ("json", 64), ("sse", 1), ("sse", 16), ("sse", 64))
PIN = {0, 1} <= os.sched_getaffinity(0)
SERVER_CPU, CLIENT_CPU = 0, 1
JSON_HEADERS = {"Content-Type": "application/json"}
Errors = dict[str, int]


class BenchError(RuntimeError):
    pass


def chat_body(target: str, stream: bool) -> bytes:
    """The chat request; the fake itself is asked for the upstream model the gateway uses."""
    model = "bench-model" if target == "direct" else "bench"
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "Say hello"}],
    }
    return orjson.dumps({**body, "stream": True} if stream else body)


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if PIN else []


# --- /proc ------------------------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    """pid and all its descendants (children of every thread)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in children.read_text().split()]
            except OSError:
                continue
    return out


def proc_files(pid: int, name: str) -> Iterator[str]:
    for p in tree(pid):
        try:
            yield Path(f"/proc/{p}/{name}").read_text()
        except OSError:
            continue


def cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime (reaped children) of pid and its descendants."""
    return sum(sum(map(int, s[s.rfind(")") + 2 :].split()[11:15])) for s in proc_files(pid, "stat"))


def rss_kb(pid: int) -> int:
    """VmRSS of pid and its descendants, in KiB."""
    found = (re.search(r"^VmRSS:\s+(\d+)", s, re.M) for s in proc_files(pid, "status"))
    return sum(int(m.group(1)) for m in found if m)


# --- processes --------------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


class Procs:
    """Every child this bench starts; stop() ends them (SIGTERM, then SIGKILL its own session)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.live: list[Server] = []

    def start(self, name: str, cmd: list[str], pattern: str, timeout: float = 20.0) -> Server:
        log = self.tmp / f"{len(list(self.tmp.iterdir())):03d}-{name}.log"
        with log.open("wb") as fh:  # a file, never a pipe nobody reads
            proc = subprocess.Popen(
                [*pinned(SERVER_CPU), *cmd], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                start_new_session=True,
            )  # fmt: skip
        server = Server(name, proc, "", log)
        self.live.append(server)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            m = re.search(pattern, log.read_text("utf-8", "replace"))
            if m:
                server.url = m.group(1)
                return server
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
        config = self.tmp / f"{len(list(self.tmp.iterdir())):03d}-gateway.toml"
        config.write_text(
            '[server]\nlisten = "127.0.0.1:0"\naccess_log = true\nwatch = true\n'
            f'workers = {workers}\n\n[upstreams.up]\nprovider = "openai"\n'
            f'base_url = "{upstream.url}/v1"\nmodel = "bench-model"\n\n'
            '[routes.bench]\nstrategy = "latency"\ntiers = [{ up = 1 }]\n'
        )
        cmd = [GATEWAY, "serve", "--config", str(config)]
        return self.start("gateway", cmd, r'"event":"ready".*?"address":"(http://[^"]+)"')

    def stop(self, *servers: Server) -> None:
        for s in servers:
            if s.proc.poll() is None:
                s.proc.send_signal(signal.SIGTERM)
        for s in servers:
            try:
                s.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(s.pid, signal.SIGKILL)  # the session start_new_session made for it
                s.proc.wait(timeout=5)
            if s in self.live:
                self.live.remove(s)


def gateway_log(log: Path) -> tuple[Counter[str], Counter[str]]:
    """Access statuses, and warning/error events and non-JSON lines, of one gateway log."""
    statuses: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for line in log.read_bytes().splitlines():
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:
            other[f"non-JSON line: {line[:100].decode('utf-8', 'replace')}"] += 1
            continue
        if ev.get("event") == "access":
            statuses[f"{ev.get('status')} {ev.get('failure') or ''}".strip()] += 1
        elif ev.get("level") in ("warning", "error"):
            other[f"{ev.get('level')} {ev.get('event')}"] += 1
    return statuses, other


# --- wrk --------------------------------------------------------------------------------------
@dataclass
class Run:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: int
    cpu_us: float  # CPU time of the measured process tree per completed request


def wrk_cmd(url: str, conns: int, seconds: int, script: str) -> list[str]:
    opts = ["-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    return [
        *pinned(CLIENT_CPU),
        "wrk",
        *opts,
        "-s",
        str(LUA / script),
        f"{url}/v1/chat/completions",
    ]


def wrk_result(stdout: bytes) -> dict[str, float]:
    line = next((x for x in stdout.splitlines() if x.startswith(b"BENCH ")), None)
    if line is None:
        raise BenchError(f"no summary line from wrk: {stdout[-2000:]!r}")
    result: dict[str, float] = orjson.loads(line[6:])
    return result


def wrk(url: str, body: bytes, conns: int, seconds: int, pid: int) -> Run:
    env = {**os.environ, "BENCH_BODY": body.decode()}
    before = cpu_ticks(pid)
    cmd = wrk_cmd(url, conns, seconds, "post.lua")
    out = subprocess.run(cmd, env=env, capture_output=True, timeout=seconds + 60, check=False)
    ticks = cpu_ticks(pid) - before
    s = wrk_result(out.stdout + out.stderr)
    return Run(
        requests=int(s["requests"]),
        rps=s["requests"] / (s["duration_us"] / 1e6),
        p50_ms=s["p50_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        non2xx=int(s["status"]),
        socket_errors=int(s["connect"] + s["read"] + s["write"] + s["timeout"]),
        cpu_us=ticks * TICK_US / max(s["requests"], 1),
    )


def run_round(
    procs: Procs, rnd: int, args: argparse.Namespace, runs: dict[str, list[Run]]
) -> dict[str, object]:
    fake = procs.fake("fast", "--chunks", str(CHUNKS))
    servers = {
        "direct": fake,
        "bare": procs.bare(fake),
        "gateway": procs.gateway(fake, args.workers),
    }
    warm = Counter[str]()
    try:
        for name, s in servers.items():  # warm-up: connection pools, the latency strategy's EWMA
            for stream in (False, True):
                r = wrk(s.url, chat_body(name, stream), 16, 1, s.pid)
                warm.update(non2xx=r.non2xx, socket_errors=r.socket_errors)
        gw_procs = len(tree(servers["gateway"].pid))
        order = TARGETS[rnd % 3 :] + TARGETS[: rnd % 3]  # who goes first rotates every round
        for kind, conns in LOADS:
            for name in order:
                s = servers[name]
                r = wrk(s.url, chat_body(name, kind == "sse"), conns, args.duration, s.pid)
                runs.setdefault(f"{kind}/{conns}/{name}", []).append(r)
                note(
                    f"round {rnd + 1}: {kind:4} c={conns:<3} {name:8} {r.rps:9,.0f}/s  p50 "
                    f"{r.p50_ms:7.3f} ms  cpu {r.cpu_us:7.1f} us/req  "
                    f"errors {r.non2xx + r.socket_errors}"
                )
    finally:
        procs.stop(*servers.values())
    statuses, events = gateway_log(servers["gateway"].log)
    return {"gateway_processes": gw_procs, "warmup_errors": sum(warm.values()),
            "access_statuses": statuses, "log_events": events}  # fmt: skip


# --- aiohttp clients: time to first byte, open streams ----------------------------------------
async def ttfb(urls: dict[str, str], pairs: int) -> tuple[dict[str, list[list[float]]], int]:
    """Sequential streams, interleaved over targets: [first body byte, last byte] in ms."""
    out: dict[str, list[list[float]]] = {name: [] for name in urls}
    errors = 0
    async with aiohttp.ClientSession() as session:
        for i in range(pairs + 2):  # the first two only warm the connections up
            for name in list(urls) if i % 2 == 0 else list(reversed(urls)):
                t0 = time.perf_counter()
                url, body = f"{urls[name]}/v1/chat/completions", chat_body(name, True)
                async with session.post(url, data=body, headers=JSON_HEADERS) as r:
                    await r.content.readany()
                    t1 = time.perf_counter()
                    while await r.content.readany():
                        pass
                    errors += r.status != 200
                if i >= 2:
                    out[name].append([(t1 - t0) * 1e3, (time.perf_counter() - t0) * 1e3])
    return out, errors


async def hold_streams(url: str, n: int, pid: int) -> dict[str, int]:
    """Open n streams, wait until every one has its first byte, sample RSS, then close them."""
    opened, failed, release = 0, 0, asyncio.Event()
    gate = asyncio.Semaphore(100)  # connect in waves: listen backlogs are finite

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal opened, failed
        try:
            async with gate:
                url_ = f"{url}/v1/chat/completions"
                r = await session.post(url_, data=chat_body("gateway", True), headers=JSON_HEADERS)
                if r.status != 200 or not await r.content.readany():
                    raise BenchError(f"status {r.status}")
                opened += 1
            await release.wait()
            r.close()
        except (aiohttp.ClientError, OSError, BenchError, asyncio.TimeoutError):
            failed += 1

    async def sample() -> dict[str, int]:
        deadline = time.monotonic() + 30
        while opened + failed < n and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        figures = {"open": opened, "failed": failed, "open_kb": rss_kb(pid)}
        release.set()
        return figures

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        *_, figures = await asyncio.gather(*(one(session) for _ in range(n)), sample())
    return figures


def memory(procs: Procs, streams: int, workers: int) -> dict[str, dict[str, int]]:
    slow = procs.fake("slow", "--chunks", "40", "--chunk-delay", "0.5")  # 20 s per stream
    out: dict[str, dict[str, int]] = {}
    try:
        for name in ("bare", "gateway"):
            s = procs.bare(slow) if name == "bare" else procs.gateway(slow, workers)
            try:
                time.sleep(1.0)
                idle = rss_kb(s.pid)
                held = asyncio.run(hold_streams(s.url, streams, s.pid))
                time.sleep(2.0)
                out[name] = {"idle_kb": idle, **held, "after_kb": rss_kb(s.pid)}
            finally:
                procs.stop(s)
    finally:
        procs.stop(slow)
    return out


def soak(procs: Procs, seconds: int, workers: int) -> dict[str, object]:
    """Mixed load (3 JSON : 1 stream, c=16) for `seconds`; RSS sampled every 30 s."""
    fake = procs.fake("soak", "--chunks", str(CHUNKS))
    gw = procs.gateway(fake, workers)
    env = {**os.environ, "BENCH_BODY": chat_body("gateway", False).decode()}
    env["BENCH_STREAM_BODY"] = chat_body("gateway", True).decode()
    samples = [rss_kb(gw.pid)]
    try:
        cmd = wrk_cmd(gw.url, 16, seconds, "soak.lua")
        with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as p:
            try:
                while True:
                    try:
                        stdout, _ = p.communicate(timeout=30)
                        break
                    except subprocess.TimeoutExpired:  # output is kept for the next call
                        samples.append(rss_kb(gw.pid))
            finally:
                if p.poll() is None:
                    p.kill()
        samples.append(rss_kb(gw.pid))
    finally:
        procs.stop(fake, gw)
    s = wrk_result(stdout)
    errs = int(s["connect"] + s["read"] + s["write"] + s["timeout"])
    return {"seconds": seconds, "requests": int(s["requests"]), "non2xx": int(s["status"]),
            "socket_errors": errs, "rss_kb": samples}  # fmt: skip


# --- report -----------------------------------------------------------------------------------
def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def table(title: str, rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(f"\n{title}")
    for r in rows:
        pairs = enumerate(zip(r, widths, strict=True))
        cells = [c.rjust(w) if i > 2 else c.ljust(w) for i, (c, w) in pairs]
        print("  " + "  ".join(cells).rstrip())


def environment(args: argparse.Namespace) -> dict[str, str]:
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    libs = ", ".join(f"{p} {md.version(p)}" for p in ("aiohttp", "uvloop", "orjson", "structlog"))
    place = f"fake upstream, bare proxy and gateway on CPU {SERVER_CPU} (taskset); wrk and the"
    return {
        "versions": f"python {platform.python_version()}, {libs}, wrk {(wrk_v.split() + ['?', '?'])[1]}",
        "cpu": f"{cpu.group(1) if cpu else '?'}, {os.cpu_count()} CPUs, Linux {platform.release()}",
        "placement": f"{place} bench's clients on CPU {CLIENT_CPU}"
        if PIN
        else "NOT pinned (< 2 CPUs)",
        "gateway": "1 upstream (openai -> fake), route bench: strategy=latency tiers=[{up=1}]; "
        f"access_log=true watch=true workers={args.workers}",
        "method": f"{args.rounds} round(s) x {args.duration} s per wrk run (-t1), targets restarted "
        "and interleaved every round; medians over rounds, ratios and deltas paired per round",
    }


def summarize(runs: dict[str, list[Run]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for kind, conns in LOADS:
        direct, bare = runs[f"{kind}/{conns}/direct"], runs[f"{kind}/{conns}/bare"]
        for name in TARGETS:
            rs = runs[f"{kind}/{conns}/{name}"]
            out[f"{kind}/{conns}/{name}"] = {
                "rps": med([r.rps for r in rs]),
                "ratio": med([r.rps / d.rps for r, d in zip(rs, direct, strict=True)]),
                "p50_ms": med([r.p50_ms for r in rs]),
                "p99_ms": med([r.p99_ms for r in rs]),
                "added_p50_ms": med([r.p50_ms - d.p50_ms for r, d in zip(rs, direct, strict=True)]),
                "added_p99_ms": med([r.p99_ms - d.p99_ms for r, d in zip(rs, direct, strict=True)]),
                "cpu_us": med([r.cpu_us for r in rs]),
                "minus_bare_us": med([r.cpu_us - b.cpu_us for r, b in zip(rs, bare, strict=True)]),
                "non2xx": sum(r.non2xx for r in rs),
                "socket_errors": sum(r.socket_errors for r in rs),
            }
    return out


def print_tables(env: dict[str, str], stats: dict[str, dict[str, float]]) -> None:
    print("llm-gateway benchmark\n" + "\n".join(f"  {k:10} {v}" for k, v in env.items()))
    rows = [["per", "c", "", "fake (direct)", "bare", "gateway", "gateway-bare", "per chunk"]]
    for kind, conns in LOADS:
        f = {n: stats[f"{kind}/{conns}/{n}"] for n in TARGETS}
        extra = f["gateway"]["minus_bare_us"]
        rows.append([f"{CHUNKS}-chunk stream" if kind == "sse" else "JSON request", str(conns), ""]
                    + [f"{f[n]['cpu_us']:.0f}" for n in TARGETS]
                    + [f"{extra:.0f}", f"{extra / CHUNKS:.1f}" if kind == "sse" else "-"])  # fmt: skip
    table("CPU time per request, us (utime+stime of the process and its children / requests)", rows)
    rows = [["load", "c", "target", "req/s", "ratio", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms"]]
    rows[0] += ["non-2xx", "sock err"]
    for kind, conns in LOADS:
        for n in TARGETS:
            f, first = stats[f"{kind}/{conns}/{n}"], n == "direct"
            added = (
                ["-", "-"] if first else [f"{f['added_p50_ms']:+.3f}", f"{f['added_p99_ms']:+.3f}"]
            )
            rows.append([kind if first else "", str(conns) if first else "", n, f"{f['rps']:,.0f}",
                         f"{f['ratio']:.3f}", f"{f['p50_ms']:.3f}", f"{f['p99_ms']:.3f}", *added,
                         f"{f['non2xx']:.0f}", f"{f['socket_errors']:.0f}"])  # fmt: skip
    table("Throughput and latency (wrk -t1 --latency; ratio = target/direct)", rows)


def describe(
    args: argparse.Namespace,
    stats: dict[str, dict[str, float]],
    rounds: list[dict[str, object]],
    times: dict[str, list[list[float]]],
    mem: dict[str, dict[str, int]],
    soaked: dict[str, object] | None,
) -> tuple[dict[str, list[str]], Errors]:
    j, s = stats["json/16/gateway"], stats["sse/16/gateway"]
    out = {"Headline (c=16, medians)": [
        f"gateway CPU per JSON request {j['cpu_us']:.0f} us, minus bare {j['minus_bare_us']:.0f} us"
        " (anchors: nginx 32, bare aiohttp 165, Portkey 1,460, LiteLLM 12,900 us)",
        f"gateway CPU per {CHUNKS}-chunk stream {s['cpu_us']:.0f} us, minus bare "
        f"{s['minus_bare_us']:.0f} us = {s['minus_bare_us'] / CHUNKS:.1f} us per forwarded chunk",
        f"throughput gateway/direct: JSON {j['ratio']:.3f}, SSE {s['ratio']:.3f}; added p50 at c=1:"
        f" JSON {stats['json/1/gateway']['added_p50_ms']:+.3f} ms",
    ]}  # fmt: skip
    d = times["direct"]
    out["Streaming time to first byte (upstream waits 50 ms between chunks; 5 chunks)"] = [
        f"{n:8} first byte {med([t[0] for t in ts]):7.3f} ms (+{med([t[0] - b[0] for t, b in zip(ts, d, strict=True)]):.3f} vs direct),"
        f" last byte {med([t[1] for t in ts]):7.2f} ms; {len(ts)} streams, median"
        for n, ts in times.items()
    ]  # fmt: skip
    out[f"Resident memory (VmRSS of the process tree) with {args.streams} open streams"] = [
        f"{n:8} idle {m['idle_kb'] / 1024:6.1f} MiB; {m['open']} streams open (first byte received,"
        f" {m['failed']} failed): {m['open_kb'] / 1024:6.1f} MiB (+{(m['open_kb'] - m['idle_kb']) / max(m['open'], 1):.1f}"
        f" KiB per stream); 2 s after closing them: {m['after_kb'] / 1024:.1f} MiB"
        for n, m in mem.items()
    ]  # fmt: skip
    procs = sorted({str(r["gateway_processes"]) for r in rounds})
    statuses: Counter[str] = sum((r["access_statuses"] for r in rounds), Counter())  # type: ignore[arg-type]
    events: Counter[str] = sum((r["log_events"] for r in rounds), Counter())  # type: ignore[arg-type]
    out["Gateway processes and log"] = [
        f"processes in the gateway's tree during the runs: {', '.join(procs)} (workers={args.workers})",
        "access log statuses (all rounds): " + ", ".join(f"{k}: {v:,}" for k, v in statuses.most_common()),
        "warnings/errors in the log: " + (", ".join(f"{k}: {v}" for k, v in events.most_common(8)) or "none"),
    ]  # fmt: skip
    errors: Errors = {
        "wrk non-2xx": sum(int(v["non2xx"]) for v in stats.values()),
        "wrk socket errors": sum(int(v["socket_errors"]) for v in stats.values()),
        "wrk warm-up errors": sum(int(r["warmup_errors"]) for r in rounds),  # type: ignore[call-overload]
        "memory: streams that failed": sum(m["failed"] + (args.streams - m["open"] - m["failed"]) for m in mem.values()),
    }  # fmt: skip
    if soaked is not None:
        rss = [kb / 1024 for kb in soaked["rss_kb"]]  # type: ignore[attr-defined]
        out[f"Soak ({soaked['seconds']} s, 3 JSON : 1 stream, c=16)"] = [
            f"{soaked['requests']:,} requests; RSS start {rss[0]:.1f} MiB, end {rss[-1]:.1f} MiB, "
            f"max {max(rss):.1f} MiB, growth {rss[-1] - rss[0]:+.1f} MiB ({len(rss)} samples)"
        ]
        errors["soak non-2xx"] = int(soaked["non2xx"])  # type: ignore[call-overload]
        errors["soak socket errors"] = int(soaked["socket_errors"])  # type: ignore[call-overload]
    return out, errors


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
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # children inherit it
    target = hard if hard == resource.RLIM_INFINITY else min(hard, 65536)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, target), hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below runs
    if PIN:
        os.sched_setaffinity(0, {CLIENT_CPU})
    env = environment(args)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        procs = Procs(Path(tmp))
        try:
            return run_all(procs, args, env)
        finally:
            procs.stop(*procs.live)


def run_all(procs: Procs, args: argparse.Namespace, env: dict[str, str]) -> int:
    started = time.monotonic()
    runs: dict[str, list[Run]] = {}
    rounds = [run_round(procs, r, args, runs) for r in range(args.rounds)]
    stats = summarize(runs)
    note("time to first byte (upstream waits 50 ms between chunks) ...")
    slow = procs.fake("ttfb", "--chunks", "5", "--chunk-delay", "0.05")
    servers = [slow, procs.bare(slow), procs.gateway(slow, args.workers)]
    try:
        urls = {n: s.url for n, s in zip(TARGETS, servers, strict=True)}
        times, ttfb_errors = asyncio.run(ttfb(urls, 8 if args.quick else 20))
    finally:
        procs.stop(*servers)
    note(f"memory with {args.streams} open streams ...")
    mem = memory(procs, args.streams, args.workers)
    soaked = soak(procs, args.soak, args.workers) if args.soak else None
    extra, errors = describe(args, stats, rounds, times, mem, soaked)
    errors["ttfb client errors"] = ttfb_errors
    zero = not any(errors.values())
    extra["Errors"] = [f"{k}: {v}" for k, v in errors.items()]
    extra["Errors"].append(f"zero errors: {'yes' if zero else 'NO'}")
    print_tables(env, stats)
    for title, lines in extra.items():
        print(f"\n{title}\n" + "\n".join(f"  {line}" for line in lines))
    print(f"\n(bench took {time.monotonic() - started:.0f} s)")
    if args.json:
        doc = {"environment": env, "loads": stats, "ttfb_ms": times, "memory": mem, "soak": soaked,
               "runs": {k: [asdict(r) for r in v] for k, v in runs.items()}, "errors": errors,
               "rounds": rounds}  # fmt: skip
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return 0 if zero else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
