"""The simulator's client: a bounded, seeded mix of streamed and JSON chat requests."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import aiohttp
import orjson

from proxy.fake.scenario import Load

REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the client saw of one request."""

    request_id: str
    stream: bool
    status: int
    ok: bool
    ttfb_s: float | None
    attempts: int
    upstream: str


def plan(load: Load, seed: int, scale: float) -> list[tuple[float, bool]]:
    """(start offset in seconds, stream?) per request: evenly spread, seeded jitter and mix."""
    rng = random.Random(seed)
    span = load.duration_s * scale
    step = span / load.requests
    return [
        (i * step + rng.random() * step, rng.random() < load.stream_share)
        for i in range(load.requests)
    ]


def body(route: str, load: Load, stream: bool, i: int) -> bytes:
    """A chat request of about `prompt_chars` characters."""
    words = f"request {i} " + "lorem ipsum " * (load.prompt_chars // 12 + 1)
    return orjson.dumps(
        {
            "model": route,
            "stream": stream,
            "max_tokens": load.max_tokens,
            "messages": [{"role": "user", "content": words[: load.prompt_chars]}],
        }
    )


async def replay(address: str, route: str, load: Load, seed: int, scale: float) -> list[Outcome]:
    """Send the whole load to the gateway at `address`; one Outcome per request, in order."""
    schedule = plan(load, seed, scale)
    gate = asyncio.Semaphore(load.concurrency)
    url = f"{address}/v1/chat/completions"
    connector = aiohttp.TCPConnector(limit=load.concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.monotonic()

        async def one(i: int, at: float, stream: bool) -> Outcome:
            await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
            async with gate:
                return await _send(session, url, body(route, load, stream, i), f"sim-{i}", stream)

        return list(await asyncio.gather(*(one(i, at, s) for i, (at, s) in enumerate(schedule))))


async def _send(
    session: aiohttp.ClientSession, url: str, payload: bytes, rid: str, stream: bool
) -> Outcome:
    headers = {"Content-Type": "application/json", "x-request-id": rid}
    start = time.monotonic()
    ttfb: float | None = None
    try:
        async with session.post(url, data=payload, headers=headers) as resp:
            chunks: list[bytes] = []
            async for chunk in resp.content.iter_any():
                if ttfb is None:
                    ttfb = time.monotonic() - start
                chunks.append(chunk)
            data = b"".join(chunks)
            attempts = resp.headers.get("x-gateway-attempts", "0")
            ok = resp.status == 200 and (
                not stream or (b"data: [DONE]" in data and b'data: {"error"' not in data)
            )
            return Outcome(
                rid,
                stream,
                resp.status,
                ok,
                ttfb,
                int(attempts) if attempts.isdigit() else 0,
                resp.headers.get("x-gateway-upstream", ""),
            )
    except (aiohttp.ClientError, TimeoutError):
        return Outcome(rid, stream, 0, False, ttfb, 0, "")
