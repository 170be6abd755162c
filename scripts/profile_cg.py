"""Instructions per request in the gateway process, counted with valgrind's callgrind.

CPU time on a shared machine is noisy; instruction counts are not. The gateway (uvloop,
the bench's config) runs under `valgrind --tool=callgrind`; this script sends a warm-up,
dumps and zeroes the counters (callgrind_control -d), sends a fixed number of requests at
a fixed concurrency, dumps again and divides the second dump's total by the requests.

    scripts/profile_cg [--requests 240] [--warmup 40] [--concurrency 16] [--stream]
                       [--bare] [--key] [--redis]
                       [--growth] [--body-kb N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import orjson
import uvloop
from benchproc import HEADERS, MESSAGES, ROOT, BenchError, Procs, Server, note


def body(stream: bool, kb: int, model: str = "bench") -> bytes:
    messages = MESSAGES if kb <= 0 else [{"role": "user", "content": "x" * (kb * 1024)}]
    doc: dict[str, object] = {"model": model, "messages": messages}
    return orjson.dumps({**doc, "stream": True} if stream else doc)


async def drive(url: str, n: int, conc: int, data: bytes) -> int:
    """n POSTs over conc connections; returns how many answered 2xx with a whole body."""
    headers = dict(HEADERS)
    if key := os.environ.get("BENCH_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    ok, todo = 0, iter(range(n))
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=conc)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal ok
            for _ in todo:
                async with session.post(url, data=data, headers=headers) as r:
                    await r.read()
                    ok += r.status < 300

        await asyncio.gather(*(worker() for _ in range(conc)))
    return ok


def dump(pid: int, out: Path, seen: set[Path]) -> Path:
    """Ask callgrind for a dump (counters restart from zero) and return the new file."""
    subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        new = {p for p in out.parent.glob(out.name + ".*") if p not in seen}
        for p in new:
            if b"\ntotals:" in p.read_bytes()[-4096:] or b"\nsummary:" in p.read_bytes()[-4096:]:
                seen.add(p)
                return p
        time.sleep(0.2)
    raise BenchError("callgrind did not write a dump")


def total(path: Path) -> int:
    m = re.search(rb"^(?:totals|summary): (\d+)", path.read_bytes(), re.M)
    if m is None:
        raise BenchError(f"no totals in {path}")
    return int(m.group(1))


def start_redis(tmp: Path, procs: Procs) -> str:
    """A redis-server of our own on a free port (stopped by PID): its command counts are this
    run's alone. Without redis-server, REDIS_URL (the counts then include other clients)."""
    if shutil.which("redis-server") is None:
        if url := os.environ.get("REDIS_URL"):
            return url
        raise BenchError("--redis needs redis-server on PATH or REDIS_URL")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    procs.start("redis", [*cmd, "--dir", str(tmp)], r"(Ready to accept connections)")
    return f"redis://127.0.0.1:{port}/0"


def commands(url: str) -> dict[str, int]:
    """Calls per Redis command so far (INFO commandstats)."""
    import redis  # the gateway's own Redis client library

    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def run(args: argparse.Namespace, procs: Procs, tmp: Path) -> float:
    """Instructions per request of one target under one load (printed and returned)."""
    extra = ""
    if args.redis:
        os.environ["BENCH_REDIS_URL"] = start_redis(tmp, procs)
        extra = '\n[state]\nbackend = "redis"\nurl = "env:BENCH_REDIS_URL"\n'
    fake = procs.fake("cg", "--chunks", str(args.chunks))
    out = tmp / f"callgrind.out.{time.monotonic_ns()}"  # one name per run: dumps never mix
    wrap = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--dump-instr=no")
    if args.bare:
        cmd = [*wrap, sys.executable, str(ROOT / "scripts" / "bare_proxy.py"), "--upstream"]
        gw: Server = procs.start("bare", [*cmd, fake.url], r"listening on (http://\S+)")
    else:
        gw = procs.gateway(fake, 1, key=args.key, extra=extra, wrap=wrap)
    model = "bench-model" if args.bare else "bench"
    url, data = f"{gw.url}/v1/chat/completions", body(args.stream, args.body_kb, model)
    seen: set[Path] = set()
    ok = uvloop.run(drive(url, args.warmup, args.concurrency, data))
    dump(gw.proc.pid, out, seen)
    before = commands(os.environ["BENCH_REDIS_URL"]) if args.redis else {}
    ok += uvloop.run(drive(url, args.requests, args.concurrency, data))
    measured = dump(gw.proc.pid, out, seen)
    if args.redis:
        after = commands(os.environ["BENCH_REDIS_URL"])
        calls = {k: n - before.get(k, 0) for k, n in after.items() if n - before.get(k, 0) > 0}
        calls.pop("info", None)
        print(f"Redis commands per request: {sum(calls.values()) / args.requests:.2f} "
              f"({', '.join(f'{k} {n}' for k, n in sorted(calls.items()))})")  # fmt: skip
    if ok != args.warmup + args.requests:
        raise BenchError(f"{args.warmup + args.requests - ok} request(s) failed")
    ir = total(measured)
    kind = f"{args.chunks}-chunk stream" if args.stream else "JSON request"
    size = f", body {args.body_kb} KiB" if args.body_kb else ""
    who = "bare" if args.bare else "gateway"
    print(f"{who}: {ir / args.requests / 1000:,.0f}k instructions per {kind} "
          f"(c={args.concurrency}, {args.requests} requests after {args.warmup}{size}"
          f"{', key' if args.key else ''}{', redis' if args.redis else ''})")  # fmt: skip
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(measured, args.keep / measured.name)
    procs.stop(*procs.live)
    return ir / args.requests


GROWTH = (  # (label, stream, content chunks, user message KiB, requests)
    ("JSON, body 1 KiB", False, 20, 1, 120),
    ("JSON, body 100 KiB", False, 20, 100, 60),
    ("JSON, body 1 MiB", False, 20, 1024, 12),
    ("JSON, body 10 MiB", False, 20, 10240, 4),
    ("stream, 20 chunks", True, 20, 0, 120),
    ("stream, 200 chunks", True, 200, 0, 40),
    ("stream, 2,000 chunks", True, 2000, 0, 10),
)


def growth(args: argparse.Namespace, procs: Procs, tmp: Path) -> None:
    """Instructions per request as bodies and streams grow, gateway beside bare."""
    rows = []
    for label, stream, chunks, kb, n in GROWTH:
        args.stream, args.chunks, args.body_kb = stream, chunks, kb
        args.requests, args.warmup, args.concurrency = n, max(2, n // 6), min(args.concurrency, 4)
        figures = []
        for bare in (True, False):
            args.bare = bare
            figures.append(run(args, procs, tmp))
        rows.append((label, *figures))
    print("\nGrowth: instructions per request (k), c<=4")
    print(f"  {'load':22}{'bare':>10}{'gateway':>10}{'ratio':>7}{'gateway-bare':>14}")
    for label, bare_ir, gw_ir in rows:
        print(f"  {label:22}{bare_ir / 1e3:>10,.0f}{gw_ir / 1e3:>10,.0f}{gw_ir / bare_ir:>7.2f}"
              f"{(gw_ir - bare_ir) / 1e3:>+14,.0f}")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=240)
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--stream", action="store_true", help="streamed requests")
    p.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    p.add_argument("--growth", action="store_true", help="bodies 1 KiB-10 MiB, 20-2,000 chunks")
    p.add_argument("--bare", action="store_true", help="count scripts/bare_proxy.py instead")
    p.add_argument("--key", action="store_true", help="a virtual key with rpm + budgets")
    p.add_argument("--redis", action="store_true", help='[state] backend = "redis"')
    p.add_argument("--body-kb", type=int, default=0, help="a user message of N KiB")
    p.add_argument("--keep", type=Path, help="copy the measured dump into this directory")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        print("profile_cg: valgrind is not installed", file=sys.stderr)
        return 1
    for sig in (signal.SIGINT, signal.SIGTERM):  # KeyboardInterrupt: finally stops children
        signal.signal(sig, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="gateway-cg-") as tmp:
        procs = Procs(Path(tmp))
        try:
            if args.growth:
                growth(args, procs, Path(tmp))
            else:
                run(args, procs, Path(tmp))
            return 0
        except BenchError as exc:
            note(f"profile_cg: {exc}")
            return 1
        finally:
            procs.stop(*procs.live)


if __name__ == "__main__":
    sys.exit(main())
