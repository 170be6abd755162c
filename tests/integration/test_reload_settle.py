"""A gateway.toml written in two steps under load: only the finished file is ever applied."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import aiohttp
import orjson
from conftest import FakeFactory, GatewayFactory, base_config, upstream

from proxy.config.compiler import compile_text

SETTLE_MS = 1500
"""Above the longest pause of the writer below (1 s)."""


def halves(a_url: str, b_url: str, weight: int) -> tuple[str, str]:
    """Two parts of one file; the first alone is valid TOML with fewer upstreams and routes."""
    first = (
        '[server]\nlisten = "127.0.0.1:0"\n'
        f"reload_settle_ms = {SETTLE_MS}\ndrain_timeout_s = 2\n\n"
        f'[upstreams.a]\nbase_url = "{a_url}"\nmodel = "a-model"\n\n'
        f"[routes.chat]\ntiers = [{{ a = {weight} }}]\n\n"
    )
    second = (
        f'[upstreams.b]\nbase_url = "{b_url}"\nmodel = "b-model"\n\n'
        f"[routes.late]\ntiers = [{{ b = {weight} }}]\n"
    )
    return first, second


async def test_a_file_written_in_two_steps_is_applied_only_when_finished(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    config = base_config(
        {"a": upstream(a), "b": upstream(b)},
        {"chat": {"tiers": [{"a": 1}]}, "late": {"tiers": [{"b": 1}]}},
    )
    config["server"] = {"listen": "127.0.0.1:0", "reload_settle_ms": SETTLE_MS}
    gw = await gateway(config)
    first, second = halves(a.base_url, b.base_url, 1)
    assert set(compile_text(first).routes) == {"chat"}  # the half file would be accepted
    watcher = asyncio.create_task(gw.server.reloader.watch())
    await asyncio.sleep(0.3)  # the watcher is set up

    statuses: Counter[int] = Counter()
    stop = asyncio.Event()

    async def client(session: aiohttp.ClientSession, model: str) -> None:
        body = orjson.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})
        while not stop.is_set():
            async with session.post(gw.url + "/v1/chat/completions", data=body) as r:
                await r.read()
                statuses[r.status] += 1

    b_stats = None
    rng = random.Random(7)
    async with aiohttp.ClientSession() as session:
        load = [asyncio.create_task(client(session, m)) for m in ("chat", "late") * 3]
        try:
            for weight in (2, 3, 4):
                generation = gw.server.store.generation
                b_stats = b_stats or gw.stats("b")
                head, tail = halves(a.base_url, b.base_url, weight)
                with gw.path.open("w") as f:  # truncate, write half, pause, write the rest
                    f.write(head)
                    f.flush()
                    await asyncio.sleep(rng.uniform(0.3, 1.0))
                    f.write(tail)
                for _ in range(60):  # the finished file is applied after the settle time
                    await asyncio.sleep(0.1)
                    if gw.server.store.generation > generation:
                        break
                assert gw.server.store.generation == generation + 1
                assert set(gw.server.store.current.routes) == {"chat", "late"}
        finally:
            stop.set()
            await asyncio.gather(*load)
            watcher.cancel()
    assert statuses[200] > 50
    assert set(statuses) == {200}, statuses
    assert gw.stats("b") is b_stats  # b never vanished, so its stats were never reset
