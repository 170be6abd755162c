"""`workers = 2` with [admin]: one scrape sums every worker's series (multiprocess mode)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from e2e.e2e_harness import (
    FakeStarter,
    GatewayStarter,
    chat_body,
    config_dict,
    free_port,
    upstream_entry,
    write_config,
)
from prometheus_client.parser import text_string_to_metric_families

from proxy.fake.behaviour import Behaviour

pytestmark = pytest.mark.e2e
pytest_plugins = ("e2e.e2e_fixtures",)

REQUESTS = 24


async def scrape(admin_port: int) -> str:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.get(
            f"http://127.0.0.1:{admin_port}/metrics",
            headers={"Authorization": "Bearer tok-e2e-1"},
        ) as r,
    ):
        assert r.status == 200
        return await r.text()


MAX_REQUESTS = 200


async def test_scrape_counts_the_requests_of_every_worker(
    tmp_path: Path, fake_upstreams: FakeStarter, spawn_gateway: GatewayStarter
) -> None:
    a = await fake_upstreams("a", Behaviour(chunks=2))
    admin_port = free_port()
    path = tmp_path / "gateway.toml"
    cfg = config_dict(
        {"a": upstream_entry(a, "model-a")}, {"chat": {"tiers": [{"a": 1}]}}, workers=2
    )
    cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}", "token": "env:GATEWAY_ADMIN_TOKEN"}
    write_config(path, cfg)
    gw = spawn_gateway(path, env={"GATEWAY_ADMIN_TOKEN": "tok-e2e-1"})
    address = await gw.wait_ready(timeout_s=20)
    sent = 0
    workers: set[object] = set()
    # Fresh connections until both workers have answered (SO_REUSEPORT hashes each one).
    while sent < MAX_REQUESTS and (sent < REQUESTS or len(workers) < 2):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.post(
                f"{address}/v1/chat/completions", data=chat_body("chat", stream=False)
            ) as r,
        ):
            assert r.status == 200, address
            await r.read()
        sent += 1
        workers = {e.get("worker") for e in gw.events("access")}
    # Workers move their increments to the shared files every second: wait for them.
    total, text = 0.0, ""
    for _ in range(30):
        text = await scrape(admin_port)
        total = sum(
            s.value
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name == "gateway_requests_total" and s.labels.get("route") == "chat"
        )
        if total >= sent:
            break
        await asyncio.sleep(0.2)
    assert total == sent
    assert len(workers) == 2, workers  # both workers answered, and both are in the sum
    assert "tok-e2e-1" not in text
