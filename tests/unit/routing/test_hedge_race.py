"""Tests for proxy.routing.hedge over a timed scripted `send`: no sockets anywhere."""

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
from proxy.routing.stats import StatsRegistry
from proxy.transport.headers import forward_headers


class Reply:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.first = b"{}"
        self.headers: Mapping[str, str] = CIMultiDictProxy(CIMultiDict())
        self.ttfb_s = 0.0
        self.released = 0
        self.closed = 0

    async def read(self) -> bytes:
        return b""

    def release(self) -> None:
        self.released += 1

    def close(self) -> None:
        self.closed += 1


class TimedSend:
    """Each upstream answers after its delay with its outcome; records starts and cancels."""

    def __init__(self, script: dict[str, tuple[float, Reply | BaseException]]) -> None:
        self.script = script
        self.started: list[tuple[str, float]] = []
        self.cancelled: list[str] = []

    async def __call__(
        self, request: UpstreamRequest, timeouts: Timeouts, *, stream: bool
    ) -> Reply:
        name = request.url.split("//")[1].split(".")[0]
        self.started.append((name, time.monotonic()))
        delay, outcome = self.script[name]
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        if isinstance(outcome, BaseException):
            raise outcome
        outcome.ttfb_s = delay
        return outcome


@pytest.fixture(autouse=True)
def quiet(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, object]]]:
    seen: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(logs, "event", lambda name, **f: seen.append((name, f)))
    monkeypatch.setattr(logs, "attempt_failed", lambda *a: None)
    monkeypatch.setattr(logs, "health", lambda *a, **f: None)
    return seen


def setup(
    hedge: dict[str, Any], tiers: list[dict[str, int]] | None = None, **route: Any
) -> tuple[Config, Balancer]:
    data: dict[str, Any] = {
        "upstreams": {n: {"base_url": f"http://{n}.example/v1"} for n in ("a", "b", "c")},
        "routes": {
            "chat": {
                "strategy": "round_robin",
                "tiers": tiers or [{"a": 1}, {"b": 1}],
                "hedge": hedge,
                **route,
            }
        },
    }
    config = compile_data(data, {})
    balancer = Balancer(StatsRegistry(), random.Random(1))
    balancer.adopt(config)
    return config, balancer


def exchange(config: Config, rid: str = "r") -> Exchange:
    body = orjson.dumps({"model": "chat", "messages": []})
    headers = CIMultiDictProxy(CIMultiDict({"User-Agent": "t"}))
    return Exchange(
        id=rid,
        endpoint=Endpoint.CHAT,
        snap=config,
        started=time.monotonic(),
        client_headers=headers,
        body=body,
        peek=peek(body),
        route=config.routes["chat"],
        forward_headers=forward_headers(headers, rid),
    )


def inflight(balancer: Balancer, config: Config, name: str) -> int:
    return balancer.registry.get(config.upstreams[name]).inflight


async def test_slow_first_is_hedged_and_the_fast_second_wins_at_after_plus_its_ttfb() -> None:
    config, balancer = setup({"after_ms": 50})
    slow, fast = Reply(), Reply()
    send = TimedSend({"a": (2.0, slow), "b": (0.03, fast)})
    ex = exchange(config)
    started = time.monotonic()
    win = await failover.run(send, balancer, ex)
    took = time.monotonic() - started
    assert win.reply is fast
    assert 0.075 <= took < 0.5
    assert (ex.upstream, ex.attempts, ex.tried, ex.hedge) == ("b", 2, ["a", "b"], "won")
    assert send.started[1][1] - send.started[0][1] == pytest.approx(0.05, abs=0.04)
    await asyncio.sleep(0)
    assert send.cancelled == ["a"]  # the slow attempt is cancelled at once
    assert inflight(balancer, config, "a") == 0  # released with no failure recorded
    assert balancer.registry.get(config.upstreams["a"]).failures == 0
    # the loser's wait, a lower bound of its TTFB, raised its latency estimate
    assert (balancer.registry.get(config.upstreams["a"]).ewma_ttfb_s or 0) >= 0.05
    with win:
        pass
    assert fast.released == 1 and inflight(balancer, config, "b") == 0


async def test_fast_first_answer_sends_no_hedge() -> None:
    config, balancer = setup({"after_ms": 100})
    send = TimedSend({"a": (0.01, Reply()), "b": (0.01, Reply())})
    ex = exchange(config)
    win = await failover.run(send, balancer, ex)
    assert (win.upstream.name, ex.attempts, ex.hedge) == ("a", 1, None)
    assert [n for n, _ in send.started] == ["a"]
    win.end(close=False)


async def test_first_wins_when_it_answers_before_the_hedge(
    quiet: list[tuple[str, dict[str, object]]],
) -> None:
    config, balancer = setup({"after_ms": 30})
    first = Reply()
    send = TimedSend({"a": (0.08, first), "b": (1.0, Reply())})
    ex = exchange(config)
    win = await failover.run(send, balancer, ex)
    assert win.reply is first and ex.upstream == "a" and ex.hedge == "lost"
    await asyncio.sleep(0)
    assert send.cancelled == ["b"]
    names = [n for n, _ in quiet]
    assert names == ["hedge_started", "hedge_cancelled"]
    win.end(close=False)


async def test_hedge_failure_leaves_the_race_to_the_first() -> None:
    config, balancer = setup({"after_ms": 20})
    first = Reply()
    failed = AttemptFailed(FailureKind.CONNECT, "refused")
    send = TimedSend({"a": (0.1, first), "b": (0.0, failed)})
    ex = exchange(config)
    win = await failover.run(send, balancer, ex)
    assert win.reply is first and ex.attempts == 2 and ex.hedge == "lost"
    assert balancer.registry.get(config.upstreams["b"]).failures == 1
    win.end(close=False)


async def test_both_failing_goes_on_with_failover_and_hedges_once() -> None:
    config, balancer = setup({"after_ms": 10}, tiers=[{"a": 1, "b": 1}, {"c": 1}])
    bad = AttemptFailed(FailureKind.RESET, "reset")
    ok = Reply()
    send = TimedSend({"a": (0.05, bad), "b": (0.05, bad), "c": (0.05, ok)})
    ex = exchange(config)
    win = await failover.run(send, balancer, ex)
    assert win.reply is ok and ex.attempts == 3 and ex.hedge == "started"
    win.end(close=False)


async def test_a_server_error_from_the_hedge_does_not_win() -> None:
    config, balancer = setup({"after_ms": 10})
    first = Reply()
    send = TimedSend({"a": (0.1, first), "b": (0.0, Reply(503))})
    ex = exchange(config)
    win = await failover.run(send, balancer, ex)
    assert win.reply is first
    win.end(close=False)


async def test_no_other_upstream_means_no_hedge() -> None:
    config, balancer = setup({"after_ms": 10}, tiers=[{"a": 1}])
    send = TimedSend({"a": (0.05, Reply())})
    ex = exchange(config)
    win = await failover.run(send, balancer, ex)
    assert ex.attempts == 1 and ex.hedge is None
    win.end(close=False)


async def test_max_attempts_one_means_no_hedge() -> None:
    config, balancer = setup({"after_ms": 10}, max_attempts=1)
    send = TimedSend({"a": (0.05, Reply()), "b": (0.0, Reply())})
    ex = exchange(config)
    win = await failover.run(send, balancer, ex)
    assert ex.attempts == 1 and ex.hedge is None
    win.end(close=False)


async def test_budget_caps_hedges_under_load() -> None:
    config, balancer = setup({"after_ms": 5, "budget_pct": 10, "min_per_minute": 2})
    send = TimedSend({"a": (0.02, Reply()), "b": (0.02, Reply())})
    hedged = 0
    for i in range(40):
        ex = exchange(config, f"r{i}")
        win = await failover.run(send, balancer, ex)
        hedged += ex.hedge is not None
        win.end(close=False)
    assert hedged == 4  # 10% of 40 requests over the minute


async def test_client_gone_cancels_both_attempts() -> None:
    config, balancer = setup({"after_ms": 10})
    send = TimedSend({"a": (5.0, Reply()), "b": (5.0, Reply())})
    ex = exchange(config)
    task = asyncio.get_running_loop().create_task(failover.run(send, balancer, ex))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert sorted(send.cancelled) == ["a", "b"]
    assert inflight(balancer, config, "a") == inflight(balancer, config, "b") == 0


async def test_non_failover_failure_ends_the_race() -> None:
    config, balancer = setup({"after_ms": 100})
    big = AttemptFailed(FailureKind.RESPONSE_TOO_LARGE, "too large")
    send = TimedSend({"a": (0.0, big), "b": (0.0, Reply())})
    with pytest.raises(GatewayError):
        await failover.run(send, balancer, exchange(config))
