"""Tests for proxy.routing.failover and .attempt over a scripted `send`: no sockets anywhere."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.config.compiler import compile_data
from proxy.config.values import Config, Endpoint, Timeouts
from proxy.core.errors import GatewayError
from proxy.core.exchange import Exchange
from proxy.core.failures import FailureKind
from proxy.ops import logs
from proxy.providers.base import UpstreamRequest
from proxy.providers.openai_body import peek
from proxy.routing import failover
from proxy.routing.balancer import Balancer
from proxy.routing.send import AttemptFailed
from proxy.routing.stats import StatsRegistry, UpstreamStats
from proxy.transport.headers import forward_headers

NAMES = ("a", "b", "c")


class FakeReply:
    """What a scripted upstream answers; counts how it was let go."""

    def __init__(self, status: int = 200, first: bytes = b"{}", headers: Any = None) -> None:
        self.status = status
        self.first = first
        self.headers: Mapping[str, str] = CIMultiDictProxy(CIMultiDict(headers or {}))
        self.ttfb_s = 0.05
        self.released = 0
        self.closed = 0

    async def read(self) -> bytes:
        return b""

    def release(self) -> None:
        self.released += 1

    def close(self) -> None:
        self.closed += 1


Outcome = FakeReply | BaseException


class ScriptedSend:
    """A `Send` that answers per upstream from a script, and records every request."""

    def __init__(self, script: dict[str, list[Outcome]]) -> None:
        self.script = script
        self.sent: list[tuple[str, UpstreamRequest]] = []

    async def __call__(
        self, request: UpstreamRequest, timeouts: Timeouts, *, stream: bool
    ) -> FakeReply:
        name = request.url.split("//")[1].split(".")[0]
        self.sent.append((name, request))
        await asyncio.sleep(0)
        outcome = self.script[name].pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class Events:
    """Health and attempt log events, captured where the attempt owner emits them."""

    def __init__(self) -> None:
        self.health: list[tuple[str, str]] = []
        self.details: list[dict[str, object]] = []
        self.failed: list[tuple[str, FailureKind]] = []


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> Events:
    ev = Events()

    def health(up: str, what: str, **fields: object) -> None:
        ev.health.append((up, what))
        ev.details.append(fields)

    monkeypatch.setattr(logs, "health", health)
    monkeypatch.setattr(
        logs, "attempt_failed", lambda rid, up, kind, detail: ev.failed.append((up, kind))
    )
    return ev


def setup(
    tiers: list[dict[str, int]], *, max_attempts: int = 3, consecutive: int = 3, panic: bool = True
) -> tuple[Config, Balancer]:
    data: dict[str, Any] = {
        "defaults": {
            "max_attempts": max_attempts,
            "panic": panic,
            "ejection": {"consecutive_failures": consecutive, "jitter": 0},
        },
        "upstreams": {
            n: {"base_url": f"http://{n}.example/v1?api-version=7", "model": f"{n}-model"}
            for n in NAMES
        },
        "routes": {"chat": {"strategy": "round_robin", "tiers": tiers}},
    }
    config = compile_data(data, {})
    balancer = Balancer(StatsRegistry(), random.Random(7))
    balancer.adopt(config)
    return config, balancer


def exchange(config: Config, *, stream: bool = False) -> Exchange:
    body = orjson.dumps({"model": "chat", "stream": stream, "messages": []})
    headers = CIMultiDictProxy(CIMultiDict({"User-Agent": "t"}))
    return Exchange(
        id="rid-1",
        endpoint=Endpoint.CHAT,
        snap=config,
        started=0.0,
        client_headers=headers,
        body=body,
        peek=peek(body),
        route=config.routes["chat"],
        forward_headers=forward_headers(headers, "rid-1"),
    )


def stats(config: Config, balancer: Balancer, name: str) -> UpstreamStats:
    return balancer.registry.get(config.upstreams[name])


async def test_first_answer_wins_and_the_owner_releases_everything_once(events: Events) -> None:
    config, balancer = setup([{"a": 1}])
    ok = FakeReply(200, b'{"usage": {"prompt_tokens": 3, "completion_tokens": 2}}')
    send = ScriptedSend({"a": [ok]})
    ex = exchange(config)
    win = await failover.run(send, balancer, ex)
    assert win.reply is ok
    assert (ex.attempts, ex.tried, ex.upstream, ex.failure) == (1, ["a"], "a", None)
    assert ex.ttfb_s == 0.05 and ex.upstream_status == 200
    assert stats(config, balancer, "a").inflight == 1  # held until the answer is relayed
    with win:
        pass
    win.end(close=False)  # idempotent
    assert stats(config, balancer, "a").inflight == 0
    assert (ok.released, ok.closed) == (1, 0)
    assert events.failed == [] and events.health == []


async def test_the_provider_builds_the_request_for_each_upstream(events: Events) -> None:
    config, balancer = setup([{"a": 1}, {"b": 1}])
    send = ScriptedSend({"a": [AttemptFailed(FailureKind.CONNECT, "refused")], "b": [FakeReply()]})
    ex = exchange(config)
    with await failover.run(send, balancer, ex):
        pass
    (na, ra), (nb, rb) = send.sent
    assert (na, nb) == ("a", "b")
    assert ra.url == "http://a.example/v1/chat/completions?api-version=7"
    assert orjson.loads(bytes(ra.body))["model"] == "a-model"
    assert orjson.loads(bytes(rb.body))["model"] == "b-model"
    assert rb.headers["X-Request-Id"] == "rid-1" and rb.headers["user-agent"] == "t"
    assert "Authorization" not in rb.headers  # no credential configured


async def test_connect_failure_fails_over_and_is_recorded(events: Events) -> None:
    config, balancer = setup([{"a": 1}, {"b": 1}])
    send = ScriptedSend({"a": [AttemptFailed(FailureKind.CONNECT, "refused")], "b": [FakeReply()]})
    ex = exchange(config)
    with await failover.run(send, balancer, ex):
        pass
    assert ex.tried == ["a", "b"] and ex.upstream == "b"
    assert events.failed == [("a", FailureKind.CONNECT)]
    a, b = stats(config, balancer, "a"), stats(config, balancer, "b")
    assert (a.failures, a.inflight, b.failures, b.inflight) == (1, 0, 0, 0)


async def test_a_5xx_answer_is_released_for_reuse_and_fails_over(events: Events) -> None:
    config, balancer = setup([{"a": 1}, {"b": 1}])
    bad = FakeReply(503, b'{"error": {}}')
    send = ScriptedSend({"a": [bad], "b": [FakeReply()]})
    ex = exchange(config)
    with await failover.run(send, balancer, ex):
        pass
    assert (bad.released, bad.closed) == (1, 0)
    assert events.failed == [("a", FailureKind.UPSTREAM_5XX)]
    assert ex.failure is FailureKind.UPSTREAM_5XX  # what the request went through


async def test_429_pauses_without_penalty_and_all_paused_is_a_429(events: Events) -> None:
    config, balancer = setup([{"a": 1, "b": 1}])
    send = ScriptedSend(
        {
            "a": [FakeReply(429, b"{}", {"retry-after-ms": "4000"})],
            "b": [FakeReply(429, b"{}", {"Retry-After": "2"})],
        }
    )
    ex = exchange(config)
    with pytest.raises(GatewayError) as err:
        await failover.run(send, balancer, ex)
    assert err.value.status == 429
    assert err.value.headers()["Retry-After"] == "2"
    a = stats(config, balancer, "a")
    assert a.failures == 0 and a.limited_until > 0 and a.inflight == 0
    assert sorted(ex.tried) == ["a", "b"]


async def test_a_client_error_is_returned_as_is_without_failover(events: Events) -> None:
    config, balancer = setup([{"a": 1}, {"b": 1}])
    bad = FakeReply(400, b'{"error": {"message": "bad"}}')
    send = ScriptedSend({"a": [bad], "b": [FakeReply()]})
    ex = exchange(config)
    win = await failover.run(send, balancer, ex)
    assert win.reply is bad and ex.failure is FailureKind.CLIENT_ERROR
    with win:
        pass
    assert len(send.sent) == 1 and stats(config, balancer, "a").failures == 0


async def test_attempts_are_bounded_and_the_last_cause_names_the_error(events: Events) -> None:
    config, balancer = setup([{"a": 1}, {"b": 1}, {"c": 1}], max_attempts=2)
    reset = AttemptFailed(FailureKind.TTFB_TIMEOUT, "slow")
    send = ScriptedSend({"a": [reset], "b": [reset], "c": [FakeReply()]})
    with pytest.raises(GatewayError) as err:
        await failover.run(send, balancer, exchange(config))
    assert err.value.status == 504
    assert [n for n, _ in send.sent] == ["a", "b"]


async def test_ejection_before_the_commit_point_is_logged(events: Events) -> None:
    config, balancer = setup([{"a": 1}, {"b": 1}], consecutive=1)
    send = ScriptedSend({"a": [AttemptFailed(FailureKind.RESET, "rst")], "b": [FakeReply()]})
    with await failover.run(send, balancer, exchange(config)):
        pass
    assert events.health == [("a", "ejected")]
    (detail,) = events.details
    assert detail["failure"] is FailureKind.RESET
    assert detail["streak"] == 1 and detail["ejections"] == 1
    assert detail["duration_s"] == 10.0  # base_s x 1st ejection, no jitter


async def test_a_successful_probe_logs_the_recovery(events: Events) -> None:
    config, balancer = setup([{"a": 1}, {"b": 1}], consecutive=1)
    send = ScriptedSend(
        {"a": [AttemptFailed(FailureKind.RESET, "rst"), FakeReply()], "b": [FakeReply()]}
    )
    with await failover.run(send, balancer, exchange(config)):
        pass
    st = stats(config, balancer, "a")
    st.ejected_until = time.monotonic() - 0.001  # the ejection is over: the next pick probes
    with await failover.run(send, balancer, exchange(config)) as win:
        assert win.upstream.name == "a"
    assert events.health == [("a", "ejected"), ("a", "recovered")]
    down = events.details[1]["down_s"]
    assert isinstance(down, float) and down >= 0.0


async def test_ejection_after_the_commit_point_is_logged_too(events: Events) -> None:
    config, balancer = setup([{"a": 1}], consecutive=1)
    send = ScriptedSend({"a": [FakeReply(200, b"data: {}\n\n")]})
    ex = exchange(config, stream=True)
    with await failover.run(send, balancer, ex) as win:
        win.broke(FailureKind.STREAM_BROKEN)
    assert events.health == [("a", "ejected")]
    assert ex.failure is FailureKind.STREAM_BROKEN
    assert stats(config, balancer, "a").inflight == 0


async def test_a_gateway_shutdown_mid_stream_is_no_health_signal(events: Events) -> None:
    config, balancer = setup([{"a": 1}], consecutive=1)
    send = ScriptedSend({"a": [FakeReply()]})
    with await failover.run(send, balancer, exchange(config, stream=True)) as win:
        win.broke(FailureKind.SHUTDOWN)
    assert events.health == [] and stats(config, balancer, "a").failures == 0


async def test_an_exception_while_relaying_closes_the_reply(events: Events) -> None:
    config, balancer = setup([{"a": 1}])
    ok = FakeReply()
    win = await failover.run(ScriptedSend({"a": [ok]}), balancer, exchange(config))
    with pytest.raises(ConnectionResetError), win:
        raise ConnectionResetError
    assert (ok.released, ok.closed) == (0, 1)
    assert stats(config, balancer, "a").inflight == 0


async def test_cancelled_while_sending_releases_without_a_health_signal(events: Events) -> None:
    config, balancer = setup([{"a": 1}, {"b": 1}])
    send = ScriptedSend({"a": [asyncio.CancelledError()], "b": [FakeReply()]})
    with pytest.raises(asyncio.CancelledError):
        await failover.run(send, balancer, exchange(config))
    a = stats(config, balancer, "a")
    assert (a.inflight, a.failures) == (0, 0)
    assert [n for n, _ in send.sent] == ["a"]


async def test_everything_ejected_without_panic_is_a_503(events: Events) -> None:
    config, balancer = setup([{"a": 1}], panic=False)
    st = stats(config, balancer, "a")
    st.ejected_until = 1e12
    send = ScriptedSend({"a": [FakeReply()]})
    with pytest.raises(GatewayError) as err:
        await failover.run(send, balancer, exchange(config))
    assert err.value.status == 503 and send.sent == []


async def test_panic_tries_an_ejected_upstream(events: Events) -> None:
    config, balancer = setup([{"a": 1}], panic=True)
    stats(config, balancer, "a").ejected_until = 1e12
    send = ScriptedSend({"a": [FakeReply()]})
    with await failover.run(send, balancer, exchange(config)):
        pass
    assert [n for n, _ in send.sent] == ["a"]


def responses_setup(panic: bool) -> tuple[Config, Balancer]:
    """Upstream a has /v1/responses, b has not."""
    data: dict[str, Any] = {
        "defaults": {"panic": panic},
        "upstreams": {
            "a": {"base_url": "http://a.example/v1"},
            "b": {"base_url": "http://b.example/v1", "responses": False},
        },
        "routes": {"chat": {"tiers": [{"b": 1}, {"a": 1}]}},
    }
    config = compile_data(data, {})
    balancer = Balancer(StatsRegistry(), random.Random(7))
    balancer.adopt(config)
    return config, balancer


async def test_upstreams_that_cannot_serve_the_endpoint_are_skipped(events: Events) -> None:
    config, balancer = responses_setup(panic=True)
    ex = exchange(config)
    ex.endpoint = Endpoint.RESPONSES
    send = ScriptedSend({"a": [FakeReply()]})
    win = await failover.run(send, balancer, ex)
    assert win.upstream.name == "a" and [n for n, _ in send.sent] == ["a"]
    assert send.sent[0][1].url == "http://a.example/v1/responses"
    assert ex.attempts == 1
    win.end(close=False)


async def test_an_unavailable_fit_upstream_is_a_503_not_unsupported(events: Events) -> None:
    config, balancer = responses_setup(panic=False)
    stats(config, balancer, "a").ejected_until = 1e12
    ex = exchange(config)
    ex.endpoint = Endpoint.RESPONSES
    with pytest.raises(GatewayError) as err:
        await failover.run(ScriptedSend({}), balancer, ex)
    assert (err.value.status, err.value.code) == (503, "no_healthy_upstream")
    ex2 = exchange(config)
    ex2.endpoint = Endpoint.COUNT_TOKENS  # no upstream of the route can count
    with pytest.raises(GatewayError) as err:
        await failover.run(ScriptedSend({}), balancer, ex2)
    assert (err.value.status, err.value.code) == (400, "unsupported_endpoint")
