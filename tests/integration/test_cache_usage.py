"""Prompt-cache tokens through the gateway: access line, metrics and cost at the cached price."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config

from proxy.fake.behaviour import Behaviour
from proxy.ops import logs

BOUND = aiohttp.ClientTimeout(total=10)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", "sk-ant-cache")


@pytest.mark.parametrize("stream", [False, True])
async def test_cache_reads_are_reported_and_priced(
    fakes: FakeFactory, gateway: GatewayFactory, capfd: pytest.CaptureFixture[str], stream: bool
) -> None:
    fake = await fakes(
        "c", dialect="anthropic", default=Behaviour(prompt_tokens=200, cached_tokens=800, chunks=4)
    )
    up = {
        "provider": "anthropic",
        "base_url": fake.base_url + "/v1",
        "credential": "env:ANTHROPIC_TEST_KEY",
        "model": "claude-x",
        "price": {"input_per_mtok": 3.0, "output_per_mtok": 15.0, "cached_input_per_mtok": 0.3},
    }
    gw = await gateway(base_config({"c": up}, {"claude": {"tiers": [{"c": 1}]}}))
    body = {
        "model": "claude",
        "max_tokens": 16,
        "stream": stream,
        "messages": [{"role": "user", "content": "hi"}],
    }
    capfd.readouterr()
    async with (
        aiohttp.ClientSession(timeout=BOUND) as s,
        s.post(gw.url + "/v1/messages", data=orjson.dumps(body)) as r,
    ):
        assert r.status == 200
        await r.read()
        header = r.headers.get("x-gateway-cost-usd")
    await gw.server.shutdown()  # settles and flushes the access line
    logs.flush()
    lines = [orjson.loads(x) for x in capfd.readouterr().out.splitlines() if x.startswith("{")]
    access = next(x for x in lines if x.get("event") == "access")
    assert access["tokens_in"] == 1000
    assert access["tokens_cache_read"] == 800 and access["tokens_cache_write"] == 0
    # 200 fresh at 3.00 + 800 read at 0.30 + 4 out at 15.00, per million
    expected = (200 * 3.0 + 800 * 0.3 + 4 * 15.0) / 1e6
    assert access["cost_usd"] == pytest.approx(expected)
    if not stream:
        assert float(header or "nan") == pytest.approx(expected)
