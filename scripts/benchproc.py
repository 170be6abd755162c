"""Benchmark plumbing: the processes under test, /proc readings, and one wrk run each."""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = str(ROOT / "venv" / "bin" / "gateway")
CHUNKS = 20  # content chunks per benchmark stream (plus role, finish and [DONE] events)
TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")
TARGETS = ("direct", "bare", "gateway")
LOADS = (("json", 1), ("json", 16), ("json", 64), ("sse", 1), ("sse", 16), ("sse", 64))
CPUS = frozenset(os.sched_getaffinity(0))  # before main() pins this process to CPU 1
PIN = {0, 1} <= CPUS
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


def ticks_of(pid: int) -> int:
    """utime + stime + cutime + cstime of one process (no descendants)."""
    s = read(f"/proc/{pid}/stat")
    return sum(map(int, s[s.rfind(")") + 2 :].split()[11:15])) if s else 0


def idle_ticks(cpu: int = 0) -> int:
    """Idle + iowait ticks of one CPU so far (/proc/stat): the servers' CPU when pinned."""
    m = re.search(rf"^cpu{cpu} (?:\d+ ){{3}}(\d+) (\d+)", read("/proc/stat"), re.M)
    return int(m.group(1)) + int(m.group(2)) if m else 0


def cpu_ticks(pid: int) -> int:
    """utime + stime (+ cutime + cstime of reaped children) of pid and its descendants."""
    return sum(ticks_of(p) for p in tree(pid))


def status_kb(pid: int, field: str = "VmRSS") -> int:
    """A KiB field (VmRSS, VmHWM) of /proc/PID/status summed over pid and its descendants."""
    pattern = rf"^{field}:\s+(\d+)"
    found = [re.search(pattern, read(f"/proc/{p}/status"), re.M) for p in tree(pid)]
    return sum(int(m.group(1)) for m in found if m)


def rss_kb(pid: int) -> int:
    """VmRSS of pid and its descendants, in KiB."""
    return status_kb(pid, "VmRSS")


def reset_peak(pid: int) -> bool:
    """Restart the peak-RSS count (VmHWM) of pid and its descendants at their current RSS."""
    ok = True
    for p in tree(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:  # an older kernel or a process that has just exited
            ok = False
    return ok


class Server(NamedTuple):
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


class Procs:
    """Every child this bench starts; stop() ends them (SIGTERM, then SIGKILL its own session)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.live: list[subprocess.Popen[bytes]] = []

    def log_path(self, name: str) -> Path:
        return self.tmp / f"{time.monotonic_ns()}-{name}.log"

    def start(
        self,
        name: str,
        cmd: list[str],
        pattern: str,
        *,
        log: Path | None = None,
        stdout: int | None = None,
        pin: list[str] | None = None,
    ) -> Server:
        """Start cmd and wait for `pattern` in its log; `stdout` (a pipe's write end whose
        reader appends to `log`) replaces the log file as its standard output."""
        log = log or self.log_path(name)
        with log.open("ab") as fh:  # a file, never a pipe nobody reads
            out = fh.fileno() if stdout is None else stdout
            cmd = [*(SERVER_CPU if pin is None else pin), *cmd]
            p = subprocess.Popen(cmd, stdout=out, stderr=fh, start_new_session=True)
        self.live.append(p)
        deadline = time.monotonic() + (120 if "valgrind" in cmd else 20)
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

    def gateway(
        self,
        upstream: Server,
        workers: int,
        key: bool = False,
        extra: str = "",
        wrap: tuple[str, ...] = (),
        **start: Any,
    ) -> Server:
        """The gateway on `upstream`; with `key`, a keys file whose one key (with limits and
        budgets far above the load, so every request reserves and settles) wrk then sends;
        `extra` is appended to its config, `wrap` runs it under a tool (valgrind); `start`
        goes to Procs.start (log, stdout, pin)."""
        config = self.tmp / f"config-{time.monotonic_ns()}" / "gateway.toml"
        config.parent.mkdir()  # alone: the watcher watches the directory, not the log files
        if key:
            from proxy.governance import keyfile

            data = keyfile.read_raw(config.parent / "keys.toml")
            limits = {"rpm": 10**9, "tpm": 10**12, "usd_per_day": 1e9, "usd_total": 1e12}
            os.environ["BENCH_KEY"] = keyfile.add_key(data, "bench", limits)
            keyfile.write_raw(config.parent / "keys.toml", data)
        config.write_text(
            '[server]\nlisten = "127.0.0.1:0"\naccess_log = true\nwatch = true\n'
            f'workers = {workers}\n\n[upstreams.up]\nprovider = "openai"\n'
            f'base_url = "{upstream.url}/v1"\nmodel = "bench-model"\n\n'
            '[routes.bench]\nstrategy = "latency"\ntiers = [{ up = 1 }]\n' + extra
        )
        run = [*wrap, sys.executable, GATEWAY] if wrap else [GATEWAY]
        cmd = [*run, "serve", "--config", str(config)]
        ready = r'(?m)^(?=.*"event":"ready").*"address":"(http://[^"]+)"'
        return self.start("gateway", cmd, ready, **start)

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
    peak_kb: int = 0  # the target's peak RSS during the run (VmHWM reset at its start)
    secs: float = 0.0  # wall time of the run
    child_ticks: dict[int, int] = field(default_factory=dict)  # per child of the target's root
    upstream_cpu_s: float = 0.0  # CPU seconds of the upstream server over the run, when asked
    cpu0_idle_s: float = 0.0  # seconds CPU 0 (the servers' CPU when pinned) was idle


def children_ticks(pid: int) -> dict[int, int]:
    """CPU ticks of each child of pid with its own descendants (the workers of a supervisor)."""
    kids = [
        int(c) for t in Path(f"/proc/{pid}/task").glob("*") for c in read(t / "children").split()
    ]
    return {k: cpu_ticks(k) for k in kids}


def wrk(
    s: Server,
    body: bytes | Path,
    conns: int,
    secs: int,
    phase: str,
    lua: str = "post",
    upstream: Server | None = None,
) -> Run:
    """One wrk run (1 thread, on the client CPU) with the target's CPU time and RSS; a Path
    body is read from that file by post.lua (an environment variable holds a few 100 KiB);
    with `upstream`, that server's CPU time over the run is kept too."""
    script, url = ROOT / "scripts" / "bench_wrk" / f"{lua}.lua", f"{s.url}/v1/chat/completions"
    cmd = [*CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", "--timeout", "5s"]
    cmd += ["-s", str(script), url]
    env = {**os.environ, "BENCH_STREAM_BODY": chat_body("gateway", True).decode()}  # soak.lua
    if isinstance(body, Path):
        env["BENCH_BODY_FILE"] = str(body)
    else:
        env["BENCH_BODY"] = body.decode()
    reset_peak(s.proc.pid)
    kids = children_ticks(s.proc.pid)
    up, idle = (cpu_ticks(upstream.proc.pid) if upstream else 0), idle_ticks()
    rss, before, stdout, t0 = [rss_kb(s.proc.pid)], cpu_ticks(s.proc.pid), b"", time.monotonic()
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
    ticks, wall = cpu_ticks(s.proc.pid) - before, time.monotonic() - t0
    up = cpu_ticks(upstream.proc.pid) - up if upstream else 0
    idle = idle_ticks() - idle
    kids = {k: v - kids[k] for k, v in children_ticks(s.proc.pid).items() if k in kids}
    rss.append(rss_kb(s.proc.pid))
    peak = status_kb(s.proc.pid, "VmHWM")
    line = next((x for x in stdout.splitlines() if x.startswith(b"BENCH ")), None)
    if line is None:
        raise BenchError(f"no summary line from wrk: {stdout[-2000:]!r}")
    w = orjson.loads(line[6:])
    sock = w["connect"] + w["read"] + w["write"] + w["timeout"]
    ERRORS[f"{phase}: non-2xx"] += w["status"]
    ERRORS[f"{phase}: socket errors"] += sock
    n, cpu = w["requests"], ticks * TICK_US / max(w["requests"], 1)
    rps = n / (w["duration_us"] / 1e6)
    p50, p99 = w["p50_us"] / 1000, w["p99_us"] / 1000
    up_s, idle_s = up * TICK_US / 1e6, idle * TICK_US / 1e6
    return Run(n, rps, p50, p99, w["status"] + sock, cpu, rss, peak, wall, kids, up_s, idle_s)
