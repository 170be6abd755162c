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
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import orjson

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
    ) -> Server:
        """The gateway on `upstream`; with `key`, a keys file whose one key (with limits and
        budgets far above the load, so every request reserves and settles) wrk then sends;
        `extra` is appended to its config, `wrap` runs it under a tool (valgrind)."""
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
