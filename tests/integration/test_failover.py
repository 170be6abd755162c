"""Failover before the commit point, against scripted fake upstreams on 127.0.0.1."""

from __future__ import annotations

import socket
import time

import orjson
from conftest import FakeFactory, GatewayFactory, base_config, post_chat, upstream
from multidict import CIMultiDict

from proxy.fake.behaviour import Behaviour

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hello"}]}


def two_tiers(a: object, b: object, **route: object) -> dict[str, object]:
    return base_config(
        {"a": upstream(a), "b": upstream(b)},  # type: ignore[arg-type]
        {"chat": {"tiers": [{"a": 1}, {"b": 1}], **route}},
    )


async def post(url: str, body: object = CHAT) -> tuple[int, CIMultiDict[str], bytes]:
    return await post_chat(url, body)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_fails_over_on_500(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a, b = await fakes("a"), await fakes("b")
    a.script(Behaviour(status=500))
    gw = await gateway(two_tiers(a, b))
    status, headers, body = await post(gw.url)
    assert status == 200
    assert headers["x-gateway-upstream"] == "b"
    assert headers["x-gateway-attempts"] == "2"
    assert orjson.loads(body)["model"] == "b-model"
    assert len(a.requests) == 1 and len(b.requests) == 1


async def test_429_with_retry_after_pauses_that_upstream(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    a.script(Behaviour(status=429, retry_after="2"))
    gw = await gateway(two_tiers(a, b))
    status, headers, _ = await post(gw.url)
    assert (status, headers["x-gateway-upstream"]) == (200, "b")
    # Within the 2 s the provider asked for, a is not tried again and it is no health failure.
    for _ in range(3):
        status, headers, _ = await post(gw.url)
        assert (status, headers["x-gateway-upstream"], headers["x-gateway-attempts"]) == (
            200,
            "b",
            "1",
        )
    assert len(a.requests) == 1
    stats = gw.stats("a")
    assert stats.failures == 0
    assert 1.5 < stats.limited_until - time.monotonic() <= 2.0


async def test_fails_over_on_connection_refused(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    b = await fakes("b")
    config = base_config(
        {
            "dead": {"provider": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1"},
            "b": upstream(b),
        },
        {"chat": {"tiers": [{"dead": 1}, {"b": 1}]}},
    )
    gw = await gateway(config)
    status, headers, _ = await post(gw.url)
    assert (status, headers["x-gateway-upstream"], headers["x-gateway-attempts"]) == (200, "b", "2")


async def test_fails_over_on_reset_before_headers(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    a.script(Behaviour(fault="reset_before_headers"))
    gw = await gateway(two_tiers(a, b))
    status, headers, _ = await post(gw.url)
    assert (status, headers["x-gateway-upstream"]) == (200, "b")
    assert len(a.requests) == 1


async def test_ttfb_timeout_fails_over(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a, b = await fakes("a"), await fakes("b")
    a.script(Behaviour(latency_s=3.0))
    config = two_tiers(a, b)
    config["upstreams"]["a"]["ttfb_timeout_s"] = 0.3  # type: ignore[index]
    gw = await gateway(config)
    started = time.monotonic()
    status, headers, _ = await post(gw.url)
    assert (status, headers["x-gateway-upstream"]) == (200, "b")
    assert time.monotonic() - started < 2.0


async def test_client_errors_are_returned_not_retried(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a, b = await fakes("a"), await fakes("b")
    a.script(Behaviour(status=400))
    gw = await gateway(two_tiers(a, b))
    status, headers, body = await post(gw.url)
    assert status == 400
    assert headers["x-gateway-attempts"] == "1"
    assert "error" in orjson.loads(body)
    assert len(b.requests) == 0


async def test_upstream_auth_failure_is_a_502(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a", default=Behaviour(status=401))
    gw = await gateway(
        base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}], "max_attempts": 1}})
    )
    status, headers, body = await post(gw.url)
    assert status == 502
    err = orjson.loads(body)["error"]
    assert err["code"] == "upstream_auth_failed"
    assert set(err) == {"message", "type", "param", "code"}
    assert headers["x-should-retry"] == "false"


async def test_a_route_drained_in_the_config_is_refused_without_retry(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a")
    gw = await gateway(base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 0}]}}))
    status, headers, body = await post(gw.url)
    assert status == 503
    assert orjson.loads(body)["error"]["code"] == "route_drained"
    assert headers["x-should-retry"] == "false" and "Retry-After" not in headers
    assert len(a.requests) == 0


async def test_all_upstreams_failing_give_the_last_cause(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(status=500))
    b = await fakes("b", default=Behaviour(status=503))
    gw = await gateway(two_tiers(a, b))
    status, headers, body = await post(gw.url)
    assert status == 503
    assert int(headers["Retry-After"]) >= 1
    assert orjson.loads(body)["error"]["code"] == "upstream_unavailable"


async def test_all_rate_limited_is_a_429_with_retry_after(
    fakes: FakeFactory, gateway: GatewayFactory
) -> None:
    a = await fakes("a", default=Behaviour(status=429, retry_after="7"))
    b = await fakes("b", default=Behaviour(status=429, retry_after="3"))
    gw = await gateway(two_tiers(a, b))
    status, headers, body = await post(gw.url)
    assert status == 429
    assert headers["Retry-After"] == "3"
    assert orjson.loads(body)["error"]["code"] == "rate_limit_exceeded"
    # Both are now paused: the gateway answers 429 itself without calling either.
    status, headers, _ = await post(gw.url)
    assert status == 429 and headers["x-gateway-attempts"] == "0"
    assert 1 <= int(headers["Retry-After"]) <= 3
    assert len(a.requests) == 1 and len(b.requests) == 1


async def test_ejection_then_panic_then_probe(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a", default=Behaviour(status=500))
    config = base_config(
        {"a": upstream(a, ejection={"consecutive_failures": 2, "base_s": 0.5, "jitter": 0})},
        {"chat": {"tiers": [{"a": 1}], "max_attempts": 1}},
    )
    gw = await gateway(config)
    for _ in range(2):
        assert (await post(gw.url))[0] == 502
    stats = gw.stats("a")
    assert stats.ejected_until > time.monotonic()
    # Every upstream is ejected: panic mode still tries rather than failing closed.
    a.default = Behaviour()
    status, headers, _ = await post(gw.url)
    assert (status, headers["x-gateway-upstream"]) == (200, "a")
    assert stats.ejected_until == 0.0


async def test_panic_off_fails_fast_with_503(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a = await fakes("a", default=Behaviour(status=500))
    config = base_config(
        {"a": upstream(a, ejection={"consecutive_failures": 1, "base_s": 30})},
        {"chat": {"tiers": [{"a": 1}], "max_attempts": 1}},
    )
    config["defaults"]["panic"] = False  # type: ignore[index]
    gw = await gateway(config)
    assert (await post(gw.url))[0] == 502
    status, headers, body = await post(gw.url)
    assert status == 503
    assert int(headers["Retry-After"]) >= 25
    assert orjson.loads(body)["error"]["code"] == "no_healthy_upstream"
    assert len(a.requests) == 1


async def test_redirects_are_not_followed(fakes: FakeFactory, gateway: GatewayFactory) -> None:
    a, b = await fakes("a"), await fakes("b")
    a.script(Behaviour(status=302, headers=(("Location", b.base_url + "/chat/completions"),)))
    gw = await gateway(
        base_config({"a": upstream(a)}, {"chat": {"tiers": [{"a": 1}], "max_attempts": 1}})
    )
    status, _, _ = await post(gw.url)
    assert status == 502
    assert len(b.requests) == 0
