"""The gateway's own answers: x-request-id on every kind, /v1/models/{id}, their access lines."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, upstream
from multidict import CIMultiDict

from proxy.fake.behaviour import Behaviour
from proxy.ops import logs


async def call(
    url: str, method: str = "GET", data: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, CIMultiDict[str], bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, data=data, headers=headers) as r,
    ):
        return r.status, r.headers.copy(), await r.read()


def access_lines(capfd: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    logs.flush()
    out = capfd.readouterr().out.splitlines()
    return [
        x
        for x in (orjson.loads(line) for line in out if line.startswith("{"))
        if x["event"] == "access"
    ]


CHAT = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/v1/models", b"", 200),
        ("GET", "/v1/models/chat", b"", 200),
        ("GET", "/v1/models/nope", b"", 404),
        ("GET", "/healthz", b"", 200),
        ("GET", "/readyz", b"", 200),
        ("GET", "/v1/nothing-here", b"", 404),
        ("DELETE", "/v1/models", b"", 405),
        ("GET", "/v1/chat/completions", b"", 405),
        ("POST", "/v1/chat/completions", b"{", 400),
        ("POST", "/v1/chat/completions", b'{"model": "nope"}', 404),
        ("POST", "/v1/chat/completions", CHAT, 200),
        ("POST", "/v1/embeddings", b'{"model": "down"}', 502),
    ],
)
async def test_every_answer_carries_a_request_id(
    fakes: FakeFactory, gateway: GatewayFactory, method: str, path: str, body: bytes, status: int
) -> None:
    a = await fakes("a")
    dead = await fakes("dead", default=Behaviour(status=500))
    gw = await gateway(
        base_config(
            {"a": upstream(a), "dead": upstream(dead)},
            {"chat": {"tiers": [{"a": 1}]}, "down": {"tiers": [{"dead": 1}], "max_attempts": 1}},
        )
    )
    got, headers, _ = await call(gw.url + path, method, body)
    assert got == status
    assert headers.get("x-request-id")
    got, headers, _ = await call(gw.url + path, method, body, {"X-Request-Id": "mine-123"})
    assert headers["x-request-id"] == "mine-123"


async def test_models_retrieve_answers_one_route_or_model_not_found(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"team/chat": {"tiers": [{"a": 1}]}}))
    status, _, body = await call(gw.url + "/v1/models/team/chat")
    obj = orjson.loads(body)
    assert status == 200 and (obj["id"], obj["object"]) == ("team/chat", "model")
    status, headers, body = await call(gw.url + "/v1/models/other")
    err = orjson.loads(body)["error"]
    assert (status, err["code"], err["param"]) == (404, "model_not_found", "model")
    assert headers["x-should-retry"] == "false"


async def test_model_list_and_unknown_paths_are_logged_probes_are_not(
    fakes: FakeFactory, gateway: GatewayFactory, capfd: pytest.CaptureFixture[str]
) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}}))
    capfd.readouterr()
    ua = {"User-Agent": "probe-test/1"}
    await call(gw.url + "/v1/models", headers=ua)
    await call(gw.url + "/healthz", headers=ua)
    await call(gw.url + "/readyz", headers=ua)
    await call(gw.url + "/v1/secret-admin", "PUT", headers=ua)
    await call(gw.url + "/v1/chat/completions", "POST", b'{"model": "gpt-x"}', ua)
    lines = access_lines(capfd)
    assert [(x["method"], x["path"], x["status"], x["error"]) for x in lines] == [
        ("GET", "/v1/models", 200, None),
        ("PUT", "/v1/secret-admin", 404, "not_found"),
        ("POST", "/v1/chat/completions", 404, "model_not_found"),
    ]
    assert all(x["user_agent"] == "probe-test/1" and x["client"] == "127.0.0.1" for x in lines)
    assert lines[2]["model"] == "gpt-x" and lines[2]["route"] is None


async def test_readyz_detail_is_for_loopback_only_by_default(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    config = base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}})
    gw = await gateway(config)
    _, _, body = await call(gw.url + "/readyz")
    assert orjson.loads(body)["upstreams"] == {"a": {"state": "healthy"}}
    config["server"]["readyz_detail"] = "never"  # type: ignore[index]
    gw.write(config)
    assert await gw.reload()
    status, _, body = await call(gw.url + "/readyz")
    assert (status, orjson.loads(body)) == (200, {"status": "ready"})


async def test_probes_answer_503_during_a_drain_and_close_the_connection(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}}))
    gw.server.drain.draining = True  # the state a SIGTERM puts the process in
    try:
        for probe in ("/healthz", "/readyz"):
            status, headers, body = await call(gw.url + probe)
            assert (status, orjson.loads(body)) == (503, {"status": "draining"})
            assert headers["Connection"] == "close" and headers["x-request-id"]
    finally:
        gw.server.drain.draining = False
