"""Gateway memory against concurrent large request bodies: peak RSS per body byte, and the budget.

venv/bin/python scripts/bench_bodies.py [--mb 60] [--concurrency 1 4 8] [--budget-mb 256]

Starts a sink upstream (reads each body, answers a small chat completion) in this process and
one gateway process per concurrency level, sends that many bodies at once, and prints the
gateway's resident memory idle and at its peak (VmHWM), the peak above idle per body byte in
flight, and the statuses (503 once the in-flight body budget is full).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
GATEWAY = str(ROOT / "venv" / "bin" / "gateway")
ANSWER = orjson.dumps(
    {
        "id": "x",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
)


async def sink(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=ANSWER, content_type="application/json")


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found for pid {pid}")


async def start_gateway(config: Path) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        GATEWAY,
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "NO_PROXY": "127.0.0.1"},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        if not line:
            break
        event = orjson.loads(line)
        if event.get("event") == "ready":
            return proc, str(event["address"])
    proc.kill()
    raise RuntimeError("the gateway did not start")


async def one_level(
    upstream: str, tmp: Path, concurrency: int, body: bytes, budget_mb: int, rewrite: bool
) -> dict[str, object]:
    config = tmp / "gateway.toml"
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:0"\nwatch = false\naccess_log = false\n'
        f"max_body_mb = {len(body) // 2**20 + 2}\nmax_inflight_body_mb = {budget_mb}\n\n"
        f'[upstreams.sink]\nbase_url = "{upstream}"\n'
        + ('model = "sink-model"\n\n' if rewrite else "\n")
        + "[routes.bench]\ntiers = [{ sink = 1 }]\n"
    )
    proc, address = await start_gateway(config)
    try:
        await asyncio.sleep(0.5)
        idle = proc_kib(proc.pid, "VmRSS")
        statuses: Counter[int] = Counter()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:

            async def post() -> None:
                async with s.post(
                    address + "/v1/chat/completions",
                    data=body,
                    headers={"Content-Type": "application/json"},
                ) as r:
                    await r.read()
                    statuses[r.status] += 1

            await asyncio.gather(*(post() for _ in range(concurrency)))
        peak = proc_kib(proc.pid, "VmHWM")
        after = proc_kib(proc.pid, "VmRSS")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
    return {"idle": idle, "peak": peak, "after": after, "statuses": dict(statuses)}


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--mb", type=int, default=60, help="size of each body, MiB (default 60)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--budget-mb", type=int, default=256, help="[server] max_inflight_body_mb")
    p.add_argument(
        "--no-rewrite", action="store_true", help="upstream without `model` (body sent as is)"
    )
    args = p.parse_args()
    filler = b"A" * (args.mb * 2**20 - 100)
    body = b'{"model":"bench","messages":[{"role":"user","content":"' + filler + b'"}]}'
    app = web.Application(client_max_size=2**31)
    app.router.add_post("/v1/chat/completions", sink)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    print(
        f"body {args.mb} MiB, in-flight budget {args.budget_mb} MiB, "
        f"model rewritten: {not args.no_rewrite}",
        file=sys.stderr,
    )
    print(
        "| bodies at once | sent MiB | idle MiB | peak MiB | peak above idle per MiB accepted "
        "| statuses |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.concurrency:
                r = await one_level(
                    upstream, Path(tmp), n, body, args.budget_mb, not args.no_rewrite
                )
                idle, peak = int(r["idle"]) / 1024, int(r["peak"]) / 1024  # type: ignore[call-overload]
                ok = Counter(r["statuses"]).get(200, 0)  # type: ignore[arg-type]
                per = (peak - idle) / (ok * args.mb) if ok else float("nan")
                print(
                    f"| {n} | {n * args.mb} | {idle:.0f} | {peak:.0f} | {per:.2f} "
                    f"| {r['statuses']} |",
                    flush=True,
                )
    finally:
        await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
