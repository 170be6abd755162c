"""`x-gateway-explain`: the routing trace in a header (allowed by config or admin token) and
at /admin/requests/ID."""

from __future__ import annotations

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, upstream

from proxy.fake.behaviour import Behaviour

TOKEN = "adm-explain-token-88"
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_TOKEN", TOKEN)


def config(a: object, b: object, c: object, *, explain: bool = False) -> dict[str, object]:
    cfg = base_config(
        {"a": upstream(a), "b": upstream(b), "c": upstream(c)},  # type: ignore[arg-type]
        {"chat": {"tiers": [{"a": 1}, {"b": 1, "c": 1}], "strategy": "latency"}},
    )
    cfg["server"]["explain"] = explain  # type: ignore[index]
    cfg["admin"] = {"listen": "127.0.0.1:0", "token": "env:GATEWAY_ADMIN_TOKEN"}
    return cfg


async def chat(url: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as s,
        s.post(url + "/v1/chat/completions", data=orjson.dumps(CHAT), headers=headers) as r,
    ):
        await r.read()
        return r.status, dict(r.headers)


async def test_trace_with_the_admin_token(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a, b, c = await fakes("a"), await fakes("b"), await fakes("c")
    a.script(Behaviour(status=503))
    gw = await gateway(config(a, b, c))
    # Without the token the header is ignored (and never forwarded upstream).
    status, headers = await chat(gw.url, {"x-gateway-explain": "1"})
    assert status == 200 and "x-gateway-explain" not in headers
    a.script(Behaviour(status=503))
    status, headers = await chat(
        gw.url, {"x-gateway-explain": "1", "x-gateway-admin-token": TOKEN, "x-request-id": "rq-1"}
    )
    assert status == 200
    trace = headers["x-gateway-explain"]
    assert trace.startswith("route=chat; cand ")
    assert "a/0=tried," in trace  # a was tried (and failed) first
    assert "try a/0@" in trace and "=upstream_5xx(" in trace
    answered = headers["x-gateway-upstream"]
    assert f"try {answered}/1@" in trace and "=200(" in trace
    assert "score:" in trace  # the latency strategy's scores of the untried candidates
    for fake in (a, b, c):
        for req in fake.requests:
            assert "x-gateway-admin-token" not in {k.lower() for k, _ in req.headers}
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            gw.server.admin_address + "/admin/requests/rq-1",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as r,
    ):
        doc = await r.json()
    assert doc["route"] == "chat" and doc["status"] == 200
    assert [x["outcome"] for x in doc["attempts"]] == ["upstream_5xx", "200"]
    assert {x["upstream"] for x in doc["candidates"]} == {"a", "b", "c"}
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            gw.server.admin_address + "/admin/requests/nope",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as r,
    ):
        assert r.status == 404


async def test_trace_open_to_all_by_config(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a, b, c = await fakes("a"), await fakes("b"), await fakes("c")
    gw = await gateway(config(a, b, c, explain=True))
    status, headers = await chat(gw.url, {"x-gateway-explain": "1"})
    assert status == 200
    trace = headers["x-gateway-explain"]
    assert trace.startswith("route=chat; cand a/0=") and "; try a/0@" in trace and "=200(" in trace
    status, headers = await chat(gw.url, {})
    assert status == 200 and "x-gateway-explain" not in headers
