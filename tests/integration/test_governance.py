"""Keys, limits, budgets and the ledger through the in-process gateway and a fake provider."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, upstream
from multidict import CIMultiDict

from proxy.fake.behaviour import Behaviour
from proxy.governance import keyfile

# 1 USD per output token and nothing for input: a request with max_tokens = 1 reserves 1 USD.
DEAR = {"input_per_mtok": 0.0, "output_per_mtok": 1_000_000.0}


def make_keys(
    folder: Path, teams: dict[str, dict[str, Any]] | None = None, **keys: dict[str, Any]
) -> dict[str, str]:
    path = folder / "keys.toml"
    data = keyfile.read_raw(path)
    for name, limits in (teams or {}).items():
        data.setdefault("teams", {})[name] = limits
    secrets = {name: keyfile.add_key(data, name, fields) for name, fields in keys.items()}
    keyfile.write_raw(path, data)
    return secrets


async def chat(
    url: str, key: str | None, body: dict[str, Any] | None = None, header: str = "authorization"
) -> tuple[int, CIMultiDict[str], bytes]:
    headers = {}
    if key is not None:
        headers[header] = f"Bearer {key}" if header == "authorization" else key
    payload = body or {
        "model": "chat",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "hi"}],
    }
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/chat/completions", data=orjson.dumps(payload), headers=headers) as r,
    ):
        return r.status, r.headers.copy(), await r.read()


def error_of(body: bytes) -> dict[str, Any]:
    err = orjson.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err  # type: ignore[no-any-return]


def config_for(fake_url_cfg: dict[str, object], **server: object) -> dict[str, object]:
    cfg = base_config(
        {"a": fake_url_cfg}, {"chat": {"tiers": [{"a": 1}]}, "other": {"tiers": [{"a": 1}]}}
    )
    cfg["server"].update(server)  # type: ignore[attr-defined]
    return cfg


async def test_401_shapes_for_both_sdks_and_403_for_a_route(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    today = dt.datetime.now(dt.UTC).date()
    keys = make_keys(
        tmp_path,
        ok={"routes": ["chat"]},
        off={"disabled": True},
        old={"expires": today - dt.timedelta(days=1)},
    )
    gw = await gateway(config_for(upstream(a)))
    for key in (None, "sk-gw-unknown", keys["off"], keys["old"]):
        status, headers, body = await chat(gw.url, key)
        assert status == 401
        assert headers["x-should-retry"] == "false"
        assert error_of(body)["type"] == "authentication_error"
        assert key is None or key.encode() not in body
    assert len(a.requests) == 0
    for header in ("authorization", "x-api-key"):
        status, headers, _ = await chat(gw.url, keys["ok"], header=header)
        assert status == 200
        assert float(headers["x-gateway-cost-usd"]) >= 0
    other: dict[str, Any] = {"model": "other", "messages": []}
    status, headers, raw = await chat(gw.url, keys["ok"], other)
    assert status == 403
    assert error_of(raw)["code"] == "model_not_allowed"
    assert headers["x-should-retry"] == "false"
    assert all(r.header("authorization") != f"Bearer {keys['ok']}" for r in a.requests)


async def test_fifty_concurrent_requests_against_a_budget_for_ten(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(latency_s=0.3, chunks=1))
    keys = make_keys(tmp_path, k={"usd_total": 10.0})
    gw = await gateway(config_for(upstream(a, price=DEAR)))
    results = await asyncio.gather(*(chat(gw.url, keys["k"]) for _ in range(50)))
    statuses = [s for s, _, _ in results]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 40
    refused = next(r for r in results if r[0] == 429)
    assert error_of(refused[2])["code"] == "budget_exceeded"
    assert refused[1]["x-should-retry"] == "false"
    assert len(a.requests) == 10


async def test_rpm_refuses_with_sdk_headers_then_heals(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    keys = make_keys(tmp_path, {"t": {"tpm": 100_000}}, k={"rpm": 3, "team": "t"})
    gw = await gateway(config_for(upstream(a)))
    for _ in range(3):
        assert (await chat(gw.url, keys["k"]))[0] == 200
    status, headers, body = await chat(gw.url, keys["k"])
    assert status == 429
    assert error_of(body)["code"] == "rate_limit_exceeded"
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert "x-should-retry" not in headers
    assert len(a.requests) == 3


async def test_tpm_counts_real_usage_and_team_limits_apply(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=5))
    keys = make_keys(tmp_path, {"t": {"rpm": 2}}, k1={"team": "t"}, k2={"team": "t"})
    gw = await gateway(config_for(upstream(a)))
    assert (await chat(gw.url, keys["k1"]))[0] == 200
    assert (await chat(gw.url, keys["k2"]))[0] == 200
    status, _, body = await chat(gw.url, keys["k1"])
    assert status == 429
    assert "team t" in error_of(body)["message"]
    counters = await gw.server.governor.state.counters("team:t", time.time())
    assert counters.parallel == 0
    assert counters.tokens_1m > 0


async def test_failed_requests_are_refunded(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(status=500))
    keys = make_keys(tmp_path, k={"usd_total": 1.0})
    cfg = config_for(upstream(a, price=DEAR))
    cfg["defaults"]["max_attempts"] = 1  # type: ignore[index]
    gw = await gateway(cfg)
    for _ in range(3):
        assert (await chat(gw.url, keys["k"]))[0] == 502
    counters = await gw.server.governor.state.counters("key:k", time.time())
    assert counters.usd["total"] == 0
    assert counters.parallel == 0


async def test_disabling_a_key_applies_within_a_second(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    keys = make_keys(tmp_path, k={})
    gw = await gateway(config_for(upstream(a), watch=True))
    gw.server.tasks.spawn(gw.server.key_reloader.watch(), name="keys-watcher")
    await asyncio.sleep(0.2)  # the watcher is listening
    assert (await chat(gw.url, keys["k"]))[0] == 200
    path = tmp_path / "keys.toml"
    data = keyfile.read_raw(path)
    keyfile.set_disabled(data, "k", True)
    keyfile.write_raw(path, data)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    status = 200
    while loop.time() < deadline and status == 200:
        await asyncio.sleep(0.05)
        status = (await chat(gw.url, keys["k"]))[0]
    assert status == 401


async def test_ledger_rows_and_spend_survive_a_restart(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=2))
    keys = make_keys(tmp_path, {"t": {}}, k={"usd_per_day": 4.0, "team": "t"})
    price = {"input_per_mtok": 0.0, "output_per_mtok": 1_000_000.0}
    cfg = config_for(upstream(a, price=price), ledger="usage.db")
    gw = await gateway(cfg)
    stream = {
        "model": "chat",
        "max_tokens": 1,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    assert (await chat(gw.url, keys["k"]))[0] == 200  # 2 tokens out: 2 USD
    assert (await chat(gw.url, keys["k"], stream))[0] == 200  # 2 USD more
    await gw.server.shutdown()
    conn = sqlite3.connect(tmp_path / "usage.db")
    rows = conn.execute(
        "SELECT key, team, route, upstream, tokens_out, cost_usd, status, estimated FROM requests"
    ).fetchall()
    conn.close()
    assert sorted(rows) == [("k", "t", "chat", "a", 2, 2.0, 200, 0)] * 2
    again = await gateway(cfg)  # a new process would do the same: spend comes from the ledger
    status, _, body = await chat(again.url, keys["k"])
    assert status == 429
    assert error_of(body)["code"] == "budget_exceeded"


async def test_soft_budget_threshold_calls_the_webhook_once_per_period(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    from aiohttp import web

    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        a = await fakes("a", default=Behaviour(chunks=1))
        keys = make_keys(tmp_path, k={"usd_per_day": 10.0, "soft_pct": 50.0})
        cfg = config_for(upstream(a, price=DEAR), budget_webhook=f"http://127.0.0.1:{port}/hook")
        gw = await gateway(cfg)
        for _ in range(8):  # 1 USD each: the threshold (5 USD) is passed at the fifth
            assert (await chat(gw.url, keys["k"]))[0] == 200
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        assert len(got) == 1
        assert got[0]["event"] == "budget_soft_limit"
        assert got[0]["scope"] == "key:k"
        assert got[0]["budget"] == "usd_per_day"
        assert got[0]["spent_usd"] == pytest.approx(5.0)
    finally:
        await runner.cleanup()


async def test_a_client_that_leaves_mid_stream_pays_for_what_was_streamed(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=40, chunk_delay_s=0.05))
    keys = make_keys(tmp_path, k={"usd_total": 1000.0})
    gw = await gateway(config_for(upstream(a, price=DEAR), ledger="usage.db"))
    body = {
        "model": "chat",
        "max_tokens": 1,
        "stream": True,
        "messages": [{"role": "user", "content": "x"}],
    }
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            gw.url + "/v1/chat/completions",
            data=orjson.dumps(body),
            headers={"Authorization": f"Bearer {keys['k']}"},
        ) as r,
    ):
        assert r.status == 200
        await r.content.readuntil(b"\n\n")
        await r.content.readuntil(b"\n\n")
    state = gw.server.governor.state
    counters = await state.counters("key:k", time.time())
    for _ in range(100):
        counters = await state.counters("key:k", time.time())
        if counters.parallel == 0:
            break
        await asyncio.sleep(0.02)
    assert counters.parallel == 0
    assert 1.0 <= counters.usd["total"] < 40.0
    await gw.server.shutdown()
    conn = sqlite3.connect(tmp_path / "usage.db")
    ((status, estimated),) = conn.execute("SELECT status, estimated FROM requests").fetchall()
    conn.close()
    assert (status, estimated) == (499, 1)


async def test_the_model_list_needs_a_key_and_shows_only_its_routes(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    keys = make_keys(tmp_path, narrow={"routes": ["chat"]}, wide={})
    gw = await gateway(config_for(upstream(a)))
    async with aiohttp.ClientSession() as s:
        async with s.get(gw.url + "/v1/models") as r:
            assert r.status == 401
            assert error_of(await r.read())["code"] == "invalid_api_key"
        for name, expected in (("narrow", ["chat"]), ("wide", ["chat", "other"])):
            headers = {"Authorization": f"Bearer {keys[name]}"}
            async with s.get(gw.url + "/v1/models", headers=headers) as r:
                assert r.status == 200
                assert sorted(m["id"] for m in (await r.json())["data"]) == expected


async def test_rpm_and_tpm_over_time_with_a_turned_clock(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(chunks=5, prompt_tokens=10))
    keys = make_keys(tmp_path, r={"rpm": 2}, t={"tpm": 100})
    gw = await gateway(config_for(upstream(a)))
    now = [1_800_000_000.0 - 1_800_000_000.0 % 60]  # the start of a minute
    gw.server.governor.clock = lambda: now[0]
    assert [(await chat(gw.url, keys["r"]))[0] for _ in range(3)] == [200, 200, 429]
    now[0] += 90  # half into the next minute: the two still weigh 2 x (1 - 30/60) = 1
    assert [(await chat(gw.url, keys["r"]))[0] for _ in range(2)] == [200, 429]
    now[0] += 61
    assert (await chat(gw.url, keys["r"]))[0] == 200
    # tpm: each request reserves its prompt estimate + max_tokens 40, then settles to the
    # real 10 + 5 tokens, so more requests fit than the reservations alone would admit.
    big = {"model": "chat", "max_tokens": 40, "messages": [{"role": "user", "content": "x"}]}
    got = [(await chat(gw.url, keys["t"], big))[0] for _ in range(7)]
    assert got == [200, 200, 200, 429, 429, 429, 429]  # without the correction: 1 x 200
    assert got[-1] == 429
    status, headers, _ = await chat(gw.url, keys["t"], big)
    assert status == 429
    assert headers["x-ratelimit-limit-tokens"] == "100"
    now[0] += 120
    assert (await chat(gw.url, keys["t"], big))[0] == 200


async def test_require_keys_refuses_to_start_open_and_a_broken_keys_file_is_refused(
    tmp_path: Path, fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    from proxy.config.values import ConfigError

    a = await fakes("a")
    with pytest.raises(ConfigError, match="require_keys"):
        await gateway(config_for(upstream(a), require_keys=True))
    (tmp_path / "keys.toml").write_text('salt = "0123456789abcdef"\n[keys.x]\nhash = "nope"\n')
    with pytest.raises(ConfigError, match=r"keys\.x\.hash"):
        await gateway(config_for(upstream(a)))
