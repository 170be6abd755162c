"""Request handling at the edge: bad input, headers that must not cross, request ids, probes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from conftest import FakeFactory, GatewayFactory, base_config, upstream
from multidict import CIMultiDict

from proxy.fake.behaviour import Behaviour

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}


async def call(
    url: str, data: bytes, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, CIMultiDict[str], bytes]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, data=data, headers=headers) as r,
    ):
        return r.status, r.headers.copy(), await r.read()


def assert_openai_error(status: int, body: bytes, expected: int, code: str | None) -> None:
    assert status == expected
    err = orjson.loads(body)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 400, "invalid_request"),
        (b"{not json", 400, "invalid_request"),
        (b"[]", 400, "invalid_request"),
        (b"null", 400, "invalid_request"),
        (b'{"messages": []}', 400, "invalid_request"),
        (b'{"model": 7}', 400, "invalid_request"),
        (b'{"model": "chat", "stream": "yes"}', 400, "invalid_request"),
        (b'{"model": "gpt\xe2\x80\x914o"}', 404, "model_not_found"),
        (b'{"model": "http://169.254.169.254/"}', 404, "model_not_found"),
    ],
)
async def test_bad_input_is_a_clear_4xx(
    fakes: FakeFactory, gateway: GatewayFactory, payload: bytes, status: int, code: str
) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}}))
    got, headers, body = await call(gw.url + "/v1/chat/completions", payload)
    assert_openai_error(got, body, status, code)
    assert headers["x-should-retry"] == "false"
    assert len(a.requests) == 0


async def test_body_over_the_cap_is_413(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    config = base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}})
    config["server"]["max_body_mb"] = 0.01  # type: ignore[index]
    gw = await gateway(config)
    big = orjson.dumps({**CHAT, "pad": "x" * 20000})
    status, _, body = await call(gw.url + "/v1/chat/completions", big)
    assert_openai_error(status, body, 413, "request_too_large")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: the cap holds on read
        for _ in range(20):
            yield b" " * 1024

    status, _, body = await call(gw.url + "/v1/chat/completions", chunked())  # type: ignore[arg-type]  # aiohttp streams an async iterator
    assert_openai_error(status, body, 413, "request_too_large")
    assert len(a.requests) == 0


async def test_default_cap_admits_large_image_prompts(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}}))
    image = "data:image/png;base64," + "A" * (12 * 2**20)
    content = [{"type": "image_url", "image_url": {"url": image}}]
    body = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": content}]})
    status, _, _ = await call(gw.url + "/v1/chat/completions", body)
    assert status == 200
    assert len(a.requests[0].body) == len(body) + len(b"a-model") - len(b"chat")


async def test_unknown_paths_and_methods(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}}))
    status, _, body = await call(gw.url + "/v1/nothing", b"{}")
    assert_openai_error(status, body, 404, "not_found")
    status, headers, body = await call(gw.url + "/v1/chat/completions", b"", method="GET")
    assert_openai_error(status, body, 405, "method_not_allowed")
    assert headers["Allow"] == "POST"


async def test_client_credentials_and_hop_by_hop_headers_never_reach_upstream(
    fakes: FakeFactory, gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-canary-123")
    a = await fakes("a")
    config = base_config(
        {"a": upstream(a, credential="env:UPSTREAM_KEY")}, {"chat": {"tiers": [{"a": 1}]}}
    )
    gw = await gateway(config)
    sent = {
        "Authorization": "Bearer vk-client-canary",
        "x-api-key": "client-canary",
        "api-key": "client-canary",
        "x-goog-api-key": "client-canary",
        "Cookie": "session=client-canary",
        "Connection": "keep-alive, X-Custom",
        "X-Custom": "nominated",
        "Proxy-Authorization": "Basic client-canary",
        "TE": "trailers",
        "x-gateway-upstream": "b",
        "User-Agent": "test-agent/1",
    }
    status, _, _ = await call(gw.url + "/v1/chat/completions", orjson.dumps(CHAT), sent)
    assert status == 200
    got = {k.lower(): v for k, v in a.requests[0].headers}
    assert got["authorization"] == "Bearer sk-upstream-canary-123"
    assert "client-canary" not in repr(a.requests[0].headers)
    for name in ("x-api-key", "api-key", "x-goog-api-key", "cookie", "x-custom", "te"):
        assert name not in got
    assert got["user-agent"] == "test-agent/1"


async def test_request_id_is_kept_or_made(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}}))
    url = gw.url + "/v1/chat/completions"
    _, headers, _ = await call(url, orjson.dumps(CHAT), {"x-request-id": "client-rid-1"})
    assert headers["x-request-id"] == "client-rid-1"
    assert a.requests[-1].header("x-request-id") == "client-rid-1"
    _, headers, _ = await call(url, orjson.dumps(CHAT), {"x-request-id": "bad id with spaces"})
    assert headers["x-request-id"] != "bad id with spaces" and len(headers["x-request-id"]) == 20


async def test_upstream_secret_never_in_error_bodies(
    fakes: FakeFactory, gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_KEY", "sk-upstream-canary-456")
    echo = b'{"error":{"message":"Incorrect API key provided: sk-upstream-canary-456"}}'
    a = await fakes("a", default=Behaviour(status=401, error_body=echo))
    config = base_config(
        {"a": upstream(a, credential="env:UPSTREAM_KEY")},
        {"chat": {"tiers": [{"a": 1}], "max_attempts": 1}},
    )
    gw = await gateway(config)
    status, headers, body = await call(gw.url + "/v1/chat/completions", orjson.dumps(CHAT))
    assert status == 502
    assert b"canary" not in body and "canary" not in repr(headers)


async def test_health_and_readiness(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}]}}))
    status, _, body = await call(gw.url + "/healthz", b"", method="GET")
    assert (status, orjson.loads(body)["status"]) == (200, "ok")
    status, _, body = await call(gw.url + "/readyz", b"", method="GET")
    assert status == 200 and orjson.loads(body)["upstreams"] == {"a": {"state": "healthy"}}
