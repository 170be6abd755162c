"""The admin listener: /metrics parsed by prometheus-client, status, drain/undrain, auth."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, InProcessGateway, base_config, post_chat, upstream
from prometheus_client.parser import text_string_to_metric_families

from proxy.fake.behaviour import Behaviour
from proxy.server import cli

TOKEN = "adm-7f3a9c-token"
SECRET = "sk-provider-credential-5150"
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("PROVIDER_KEY", SECRET)


def config(a: object, b: object, **admin: object) -> dict[str, object]:
    cfg = base_config(
        {
            "a": upstream(a, credential="env:PROVIDER_KEY", ejection={"consecutive_failures": 2}),  # type: ignore[arg-type]
            "b": upstream(b),  # type: ignore[arg-type]
        },
        {"chat": {"tiers": [{"a": 1}, {"b": 1}]}, "solo": {"tiers": [{"a": 1}]}},
    )
    cfg["admin"] = {"listen": "127.0.0.1:0", "token": "env:GATEWAY_ADMIN_TOKEN", **admin}
    return cfg


def admin_url(gw: InProcessGateway) -> str:
    return gw.server.admin_address


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        return r.status, await r.read()


async def post(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as s, s.post(url, headers=headers) as r:
        return r.status, await r.read()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def value(
    scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(
    gw: InProcessGateway,
) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    status, body = await get(admin_url(gw) + "/metrics", AUTH)
    assert status == 200
    text = body.decode()
    return text, samples(text)


async def test_scripted_run_shows_in_metrics(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a, b = await fakes("a"), await fakes("b")
    gw = await gateway(config(a, b))
    # Two successes on a, then a fails twice (ejected), each failing over to b.
    for _ in range(2):
        assert (await post_chat(gw.url, CHAT))[0] == 200
    a.script(Behaviour(status=500), Behaviour(status=500))
    for _ in range(2):
        status, headers, _ = await post_chat(gw.url, CHAT)
        assert (status, headers["x-gateway-upstream"]) == (200, "b")
    # An unknown model: a 404 that must not become a label.
    assert (await post_chat(gw.url, {**CHAT, "model": "secret-model-xyz"}))[0] == 404
    text, m = await scrape(gw)
    assert (
        value(
            m,
            "gateway_requests_total",
            route="chat",
            upstream="a",
            status_class="2xx",
            stream="false",
        )
        == 2
    )
    assert (
        value(
            m,
            "gateway_requests_total",
            route="chat",
            upstream="b",
            status_class="2xx",
            stream="false",
        )
        == 2
    )
    assert (
        value(
            m, "gateway_requests_total", route="", upstream="", status_class="4xx", stream="false"
        )
        == 1
    )
    assert value(m, "gateway_attempts_total", upstream="a", outcome="upstream_5xx") == 2
    assert value(m, "gateway_attempts_total", upstream="a", outcome="answered") == 2
    assert value(m, "gateway_failovers_total", route="chat", kind="upstream_5xx") == 2
    assert value(m, "gateway_upstream_state", upstream="a", state="ejected") == 1
    assert value(m, "gateway_upstream_state", upstream="b", state="healthy") == 1
    assert value(m, "gateway_upstream_ttfb_seconds_count", upstream="b") == 2
    assert value(m, "gateway_request_duration_seconds_count", route="chat", upstream="a") == 2
    assert value(m, "gateway_tokens_total", route="chat", key="", direction="in") > 0
    assert value(m, "gateway_config_generation") == 1
    assert value(m, "gateway_connections_open") >= 0 and ("gateway_connections_open", ()) in m
    assert ("gateway_header_timeouts_total", ()) in m and (
        "gateway_event_loop_lag_seconds",
        (),
    ) in m
    assert "secret-model-xyz" not in text
    assert SECRET not in text and TOKEN not in text


async def test_429_counted_by_who_refused(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a, b = await fakes("a"), await fakes("b")
    gw = await gateway(config(a, b))
    a.script(Behaviour(status=429, retry_after="30"))
    assert (await post_chat(gw.url, CHAT))[0] == 200  # a said 429, b answered
    status, _, _ = await post_chat(gw.url, {**CHAT, "model": "solo"})  # a is paused: gateway 429
    assert status == 429
    _, m = await scrape(gw)
    assert value(m, "gateway_rate_limited_total", refused_by="provider", upstream="a") == 1
    assert value(m, "gateway_rate_limited_total", refused_by="gateway", upstream="") == 1
    assert value(m, "gateway_upstream_state", upstream="a", state="rate_limited") == 1


async def test_reloads_counted(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a, b = await fakes("a"), await fakes("b")
    gw = await gateway(config(a, b))
    gw.path.write_text("[broken")
    assert not await gw.reload()
    cfg = config(a, b)
    cfg["routes"]["chat"]["max_attempts"] = 2  # type: ignore[index]
    gw.write(cfg)
    assert await gw.reload()
    _, m = await scrape(gw)
    assert value(m, "gateway_config_reloads_total", result="success") == 1
    assert value(m, "gateway_config_reloads_total", result="failure") == 1
    assert value(m, "gateway_config_generation") == 2
    status, body = await get(admin_url(gw) + "/admin/status", AUTH)
    doc = orjson.loads(body)
    assert doc["config"]["generation"] == 2
    assert doc["config"]["last_reload"]["ok"] is True
    assert len(doc["config"]["sha256"]) == 64


async def test_admin_needs_the_token(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a, b = await fakes("a"), await fakes("b")
    gw = await gateway(config(a, b))
    url = admin_url(gw)
    for path in ("/metrics", "/admin/status"):
        status, body = await get(url + path)
        assert status == 401
        assert orjson.loads(body)["error"]["code"] == "admin_unauthorized"
        assert (await get(url + path, {"Authorization": "Bearer wrong"}))[0] == 401
    assert (await post(url + "/admin/upstreams/a/drain"))[0] == 401
    assert (await get(url + "/admin/status", AUTH))[0] == 200
    # The admin paths are not on the public port.
    assert (await get(gw.url + "/metrics", AUTH))[0] == 404


async def test_metrics_open_to_loopback_only_for_metrics(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    gw = await gateway(config(a, b, metrics_open=True))
    assert (await get(admin_url(gw) + "/metrics"))[0] == 200
    assert (await get(admin_url(gw) + "/admin/status"))[0] == 401


async def test_drain_and_undrain_change_traffic_at_once(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    gw = await gateway(config(a, b))
    url = admin_url(gw)
    status, body = await post(url + "/admin/upstreams/a/drain", AUTH)
    assert (status, orjson.loads(body)) == (200, {"upstream": "a", "drained": True})
    for _ in range(3):
        status, headers, _ = await post_chat(gw.url, CHAT)
        assert (status, headers["x-gateway-upstream"], headers["x-gateway-attempts"]) == (
            200,
            "b",
            "1",
        )
    assert a.request_count == 0
    doc = orjson.loads((await get(url + "/admin/status", AUTH))[1])
    assert doc["upstreams"]["a"]["state"] == "drained"
    assert doc["routes"]["chat"]["tiers"][0]["members"]["a"] == {"weight": 1, "effective_weight": 0}
    # Drained even in panic mode: a route whose only upstream is drained gets no attempt.
    status, _, _ = await post_chat(gw.url, {**CHAT, "model": "solo"})
    assert status == 503 and a.request_count == 0
    assert (await post(url + "/admin/upstreams/a/undrain", AUTH))[0] == 200
    status, headers, _ = await post_chat(gw.url, CHAT)
    assert (status, headers["x-gateway-upstream"]) == (200, "a")
    assert (await post(url + "/admin/upstreams/nope/drain", AUTH))[0] == 404


async def test_gateway_status_prints_the_table(
    fakes: FakeFactory, gateway: GatewayFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = await fakes("a"), await fakes("b")
    gw = await gateway(config(a, b))
    assert (await post(admin_url(gw) + "/admin/upstreams/b/drain", AUTH))[0] == 200
    capsys.readouterr()
    # The CLI blocks (urllib): run it off the loop that serves the in-process gateway.
    code = await asyncio.to_thread(cli.main, ["status", "--url", admin_url(gw)])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("config generation 1")
    assert any(ln.split()[:2] == ["a", "healthy"] for ln in lines)
    assert any(ln.split()[:2] == ["b", "drained"] for ln in lines)
    assert any(ln.split()[:2] == ["chat", "0"] and "a=1/1" in ln for ln in lines)
    assert any("b=1/0" in ln for ln in lines)
    assert TOKEN not in out and SECRET not in out


async def test_gateway_status_without_the_token_fails_clearly(
    fakes: FakeFactory,
    gateway: GatewayFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = await fakes("a"), await fakes("b")
    gw = await gateway(config(a, b))
    monkeypatch.delenv("GATEWAY_ADMIN_TOKEN")
    code = await asyncio.to_thread(cli.main, ["status", "--url", admin_url(gw)])
    assert code == 1
    assert "401" in capsys.readouterr().err
