"""Benchmark the gateway against the fake upstream directly and a bare aiohttp pass-through.

Starts real processes (fake upstream, scripts/bare_proxy.py, `gateway serve`) pinned to CPU 0,
drives them with wrk (and this script's aiohttp clients) pinned to CPU 1, interleaves the
targets over rounds and prints medians and paired ratios: CPU per request, throughput,
added latency, streaming time to first byte, memory with 1,000 open streams, errors.
Method and anchor figures: docs of the project's performance reference.
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

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = ROOT / "venv" / "bin" / "gateway"
LUA = ROOT / "scripts" / "bench_wrk"
CHUNKS = 20  # content chunks per benchmark stream (+ role, finish and [DONE] events)
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
TARGETS = ("direct", "bare", "gateway")
LOADS = (("json", 1), ("json", 16), ("json", 64), ("sse", 1), ("sse", 16), ("sse", 64))
PIN = len(os.sched_getaffinity(0)) >= 2 and {0, 1} <= os.sched_getaffinity(0)
SERVER_CPU, CLIENT_CPU = 0, 1


class BenchError(RuntimeError):
    pass


def chat_body(model: str, stream: bool) -> bytes:
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "Say hello"}]}
    if stream:
        body["stream"] = True
    return orjson.dumps(body)


# --- /proc ------------------------------------------------------------------------------------
def tree(pid: int) -> list[int]:
    """pid and all its descendants (children of every thread)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return out


def cpu_ticks(pid: int) -> int:
    """utime + stime (+ reaped children's) of pid and its descendants, in clock ticks."""
    total = 0
    for p in tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += sum(int(f) for f in fields[11:15])
    return total


def rss_kb(pid: int) -> int:
    """VmRSS of pid and its descendants, in KiB."""
    total = 0
    for p in tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
        total += int(m.group(1)) if m else 0
    return total


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
    """Every child this bench starts; stop_all() ends them (SIGTERM, then SIGKILL the group)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.live, self.seq = tmp, [], 0  # type: ignore[var-annotated]
        self.live: list[subprocess.Popen[bytes]]

    def start(self, name: str, cmd: list[str], pattern: str, timeout: float = 20.0) -> Server:
        self.seq += 1
        log = self.tmp / f"{self.seq:02d}-{name}.log"
        pin = ["taskset", "-c", str(SERVER_CPU)] if PIN else []
        with log.open("wb") as fh:
            proc = subprocess.Popen(
                [*pin, *cmd], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
            )
        self.live.append(proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, log.read_text("utf-8", "replace"))
            if m:
                return Server(name, proc, m.group(1), log)
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = log.read_text("utf-8", "replace")[-2000:]
        raise BenchError(f"{name} did not become ready (exit code {proc.poll()}):\n{tail}")

    def fake(self, name: str, *flags: str) -> Server:
        cmd = [str(GATEWAY), "fake-upstream", "--port", "0", "--name", name, *flags]
        return self.start(f"fake-{name}", cmd, r"listening on (http://\S+)")

    def bare(self, upstream: Server) -> Server:
        cmd = [sys.executable, str(ROOT / "scripts" / "bare_proxy.py"), "--upstream", upstream.url]
        return self.start("bare", cmd, r"listening on (http://\S+)")

    def gateway(self, upstream: Server, workers: int) -> Server:
        self.seq += 1
        config = self.tmp / f"gateway-{self.seq}.toml"
        config.write_text(gateway_toml(upstream.url, workers))
        cmd = [str(GATEWAY), "serve", "--config", str(config)]
        return self.start("gateway", cmd, r'"event":"ready".*?"address":"(http://[^"]+)"')

    def stop(self, *servers: Server) -> None:
        for s in servers:
            if s.proc.poll() is None:
                s.proc.send_signal(signal.SIGTERM)
        for s in servers:
            try:
                s.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(s.proc.pid, signal.SIGKILL)  # the session this bench created for it
                s.proc.wait(timeout=5)
            self.live.remove(s.proc)

    def stop_all(self) -> None:
        self.stop(*(Server("child", p, "", Path()) for p in list(self.live)))


def gateway_toml(upstream_url: str, workers: int) -> str:
    return (
        '[server]\nlisten = "127.0.0.1:0"\naccess_log = true\nwatch = true\n'
        f"workers = {workers}\n\n"
        f'[upstreams.up]\nprovider = "openai"\nbase_url = "{upstream_url}/v1"\n'
        'model = "bench-model"\n\n[routes.bench]\nstrategy = "latency"\ntiers = [{ up = 1 }]\n'
    )


def gateway_log_summary(log: Path) -> tuple[Counter[str], Counter[str]]:
    """Access statuses, and every warning/error event or non-JSON line, of a gateway log."""
    statuses: Counter[str] = Counter()
    other: Counter[str] = Counter()
    for line in log.read_bytes().splitlines():
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError:
            other[f"non-JSON line: {line[:80].decode('utf-8', 'replace')}"] += 1
            continue
        if ev.get("event") == "access":
            statuses[str(ev.get("status"))] += 1
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


def wrk(url: str, body: bytes, conns: int, seconds: int, pid: int, script: str = "post") -> Run:
    pin = ["taskset", "-c", str(CLIENT_CPU)] if PIN else []
    cmd = [*pin, "wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "5s"]
    cmd += ["-s", str(LUA / f"{script}.lua"), f"{url}/v1/chat/completions"]
    env = {**os.environ, "BENCH_BODY": body.decode(), "BENCH_STREAM_BODY": ""}
    if script == "soak":
        env["BENCH_STREAM_BODY"] = chat_body("bench", True).decode()
    before = cpu_ticks(pid)
    out = subprocess.run(cmd, env=env, capture_output=True, timeout=seconds + 60, check=False)
    ticks = cpu_ticks(pid) - before
    line = next((x for x in out.stdout.splitlines() if x.startswith(b"BENCH ")), None)
    if out.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stdout!r} {out.stderr!r}")
    s = orjson.loads(line[6:])
    n = max(int(s["requests"]), 1)
    return Run(
        requests=s["requests"],
        rps=s["requests"] / (s["duration_us"] / 1e6),
        p50_ms=s["p50_us"] / 1000,
        p99_ms=s["p99_us"] / 1000,
        non2xx=s["status"],
        socket_errors=s["connect"] + s["read"] + s["write"] + s["timeout"],
        cpu_us=ticks * TICK_US / n,
    )


def run_round(procs: Procs, rnd: int, args: argparse.Namespace, runs: dict[str, list[Run]]) -> dict[str, object]:
    fake = procs.fake("fast", "--chunks", str(CHUNKS))
    servers = {"direct": fake, "bare": procs.bare(fake), "gateway": procs.gateway(fake, args.workers)}
    try:
        for name, s in servers.items():  # warm-up: connection pools, the latency strategy's EWMA
            for stream in (False, True):
                wrk(s.url, chat_body("bench-model" if name == "direct" else "bench", stream), 16, 1, s.pid)
        gw_procs = len(tree(servers["gateway"].pid))
        order = TARGETS[rnd % 3 :] + TARGETS[: rnd % 3]  # rotate who goes first each round
        for kind, conns in LOADS:
            for name in order:
                s = servers[name]
                body = chat_body("bench-model" if name == "direct" else "bench", kind == "sse")
                r = wrk(s.url, body, conns, args.duration, s.pid)
                runs.setdefault(f"{kind}/{conns}/{name}", []).append(r)
                note(f"round {rnd + 1}: {kind:4} c={conns:<3} {name:8} {r.rps:9,.0f}/s  "
                     f"p50 {r.p50_ms:7.3f} ms  cpu {r.cpu_us:7.1f} us/req  errors {r.non2xx + r.socket_errors}")
    finally:
        procs.stop(*servers.values())
    statuses, other = gateway_log_summary(servers["gateway"].log)
    return {"gateway_processes": gw_procs, "access_statuses": statuses, "log_events": other}


# --- aiohttp clients (TTFB and open streams) --------------------------------------------------
async def ttfb(urls: dict[str, str], pairs: int) -> dict[str, list[tuple[float, float]]]:
    """Sequential streams, interleaved per target: (first body byte, last byte) in ms."""
    out: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
    errors = 0
    async with aiohttp.ClientSession() as session:
        for i in range(pairs + 2):
            names = list(urls) if i % 2 == 0 else list(reversed(urls))
            for name in names:
                body = chat_body("bench-model" if name == "direct" else "bench", True)
                t0 = time.perf_counter()
                async with session.post(f"{urls[name]}/v1/chat/completions", data=body,
                                        headers={"Content-Type": "application/json"}) as r:
                    await r.content.readany()
                    t1 = time.perf_counter()
                    while await r.content.readany():
                        pass
                    errors += r.status != 200
                if i >= 2:  # the first two rounds only warm the connections up
                    out[name].append(((t1 - t0) * 1e3, (time.perf_counter() - t0) * 1e3))
    out["errors"] = [(float(errors), 0.0)]
    return out


async def hold_streams(url: str, n: int, pid: int) -> dict[str, int]:
    """Open n streams, wait until every one has its first byte, sample RSS, then close them."""
    opened, failed, release = 0, 0, asyncio.Event()
    gate = asyncio.Semaphore(200)  # connect in waves: the listen backlogs are finite

    async def one(session: aiohttp.ClientSession) -> None:
        nonlocal opened, failed
        try:
            async with gate:
                r = await session.post(f"{url}/v1/chat/completions", data=chat_body("bench", True),
                                       headers={"Content-Type": "application/json"})
                if r.status != 200 or not await r.content.readany():
                    raise BenchError(f"status {r.status}")
                opened += 1
            await release.wait()
            r.close()
        except (aiohttp.ClientError, OSError, BenchError, asyncio.TimeoutError):
            failed += 1

    async def watch() -> dict[str, int]:
        deadline = time.monotonic() + 30
        while opened + failed < n and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        sample = {"open": opened, "failed": failed, "rss_kb": rss_kb(pid)}
        release.set()
        return sample

    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        *_, sample = await asyncio.gather(*(one(session) for _ in range(n)), watch())
    return sample


def memory(procs: Procs, streams: int) -> dict[str, dict[str, int]]:
    slow = procs.fake("slow", "--chunks", "40", "--chunk-delay", "0.5")  # 20 s per stream
    out: dict[str, dict[str, int]] = {}
    try:
        for name in ("bare", "gateway"):
            s = procs.bare(slow) if name == "bare" else procs.gateway(slow, 1)
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
    fake = procs.fake("soak", "--chunks", str(CHUNKS))
    gw = procs.gateway(fake, workers)
    try:
        samples = [rss_kb(gw.pid)]
        pin = ["taskset", "-c", str(CLIENT_CPU)] if PIN else []
        env = {**os.environ, "BENCH_BODY": chat_body("bench", False).decode(),
               "BENCH_STREAM_BODY": chat_body("bench", True).decode()}
        cmd = [*pin, "wrk", "-t1", "-c16", f"-d{seconds}s", "--timeout", "5s",
               "-s", str(LUA / "soak.lua"), f"{gw.url}/v1/chat/completions"]
        with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
            try:
                while proc.poll() is None:
                    with_timeout = min(30.0, seconds + 5)
                    try:
                        proc.wait(timeout=with_timeout)
                    except subprocess.TimeoutExpired:
                        samples.append(rss_kb(gw.pid))
                stdout = proc.stdout.read() if proc.stdout else b""
            finally:
                if proc.poll() is None:
                    proc.kill()
        samples.append(rss_kb(gw.pid))
    finally:
        procs.stop(fake, gw)
    line = next((x for x in stdout.splitlines() if x.startswith(b"BENCH ")), b"BENCH {}")
    s = orjson.loads(line[6:])
    errs = sum(int(s.get(k, 0)) for k in ("connect", "read", "write", "timeout"))
    return {"seconds": seconds, "requests": s.get("requests", 0), "non2xx": s.get("status", 0),
            "socket_errors": errs, "rss_kb": samples}


# --- report -----------------------------------------------------------------------------------
def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def table(title: str, head: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    print(f"\n{title}")
    for r in [head, *rows]:
        print("  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))


def environment(args: argparse.Namespace) -> dict[str, str]:
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    libs = ", ".join(f"{p} {md.version(p)}" for p in ("aiohttp", "uvloop", "orjson", "structlog"))
    return {
        "versions": f"python {platform.python_version()}, {libs}, wrk {wrk_v.split()[1] if wrk_v else '?'}",
        "cpu": f"{cpu.group(1) if cpu else '?'}, {os.cpu_count()} CPUs, Linux {platform.release()}",
        "placement": (f"fake upstream, bare proxy and gateway on CPU {SERVER_CPU}; wrk and the bench's "
                      f"aiohttp clients on CPU {CLIENT_CPU}") if PIN else "not pinned (fewer than 2 CPUs)",
        "gateway config": ("1 upstream (openai, fake), route bench strategy=latency tiers=[{up=1}], "
                           f"access_log=true, watch=true, workers={args.workers}"),
        "method": (f"{args.rounds} round(s), targets restarted and interleaved each round, wrk -t1 "
                   f"{args.duration}s per run; medians over rounds, ratios and deltas paired per round"),
    }


def summarize(runs: dict[str, list[Run]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for kind, conns in LOADS:
        direct = runs[f"{kind}/{conns}/direct"]
        for name in TARGETS:
            rs = runs[f"{kind}/{conns}/{name}"]
            bare = runs[f"{kind}/{conns}/bare"]
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


def report(env: dict[str, str], stats: dict[str, dict[str, float]], extra: dict[str, object]) -> None:
    print("llm-gateway benchmark")
    for k, v in env.items():
        print(f"  {k:15} {v}")
    rows = []
    for kind, conns in LOADS:
        f = {n: stats[f"{kind}/{conns}/{n}"] for n in TARGETS}
        per = f"stream ({CHUNKS} chunks)" if kind == "sse" else "JSON request"
        chunk = f"{f['gateway']['minus_bare_us'] / CHUNKS:.1f}" if kind == "sse" else "-"
        rows.append([per, str(conns), f"{f['direct']['cpu_us']:.0f}", f"{f['bare']['cpu_us']:.0f}",
                     f"{f['gateway']['cpu_us']:.0f}", f"{f['gateway']['minus_bare_us']:.0f}", chunk])
    table("CPU time per request, us (utime+stime of the process tree / completed requests; medians)",
          ["per", "c", "fake (direct)", "bare", "gateway", "gateway-bare", "gw-bare per chunk"], rows)
    rows = []
    for kind, conns in LOADS:
        for n in TARGETS:
            f = stats[f"{kind}/{conns}/{n}"]
            added = n != "direct"
            rows.append([kind if n == "direct" else "", str(conns) if n == "direct" else "", n,
                         f"{f['rps']:,.0f}", f"{f['ratio']:.3f}", f"{f['p50_ms']:.3f}", f"{f['p99_ms']:.3f}",
                         f"{f['added_p50_ms']:+.3f}" if added else "-", f"{f['added_p99_ms']:+.3f}" if added else "-",
                         f"{f['non2xx']:.0f}", f"{f['socket_errors']:.0f}"])
    table("Throughput and latency (wrk -t1; req/s and latency medians; ratio/added paired per round)",
          ["load", "c", "target", "req/s", "ratio", "p50 ms", "p99 ms", "+p50 ms", "+p99 ms", "non-2xx", "sock err"],
          rows)
    for title, value in extra.items():
        print(f"\n{title}")
        for line in value if isinstance(value, list) else [value]:
            print(f"  {line}")


def main() -> int:
    p = argparse.ArgumentParser(description="Benchmark the gateway (see scripts/bench.py).")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
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
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if PIN:
        os.sched_setaffinity(0, {CLIENT_CPU})
    env = environment(args)
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        procs = Procs(Path(tmp))
        try:
            return run_all(procs, args, env)
        finally:
            procs.stop_all()


def run_all(procs: Procs, args: argparse.Namespace, env: dict[str, str]) -> int:
    started = time.monotonic()
    runs: dict[str, list[Run]] = {}
    logs = [run_round(procs, r, args, runs) for r in range(args.rounds)]
    stats = summarize(runs)
    extra: dict[str, object] = {}
    ...
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
