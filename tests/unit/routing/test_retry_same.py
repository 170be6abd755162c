"""Failover when no other upstream is left: the same one again after a short pause; and the
errors that end a request at once (an answer above max_response_mb)."""

from __future__ import annotations

import time

import pytest
from test_failover_seam import (  # type: ignore[import-not-found]
    Events,
    FakeReply,
    ScriptedSend,
    events,
    exchange,
    setup,
    stats,
)

from proxy.config.values import Config
from proxy.core.errors import GatewayError
from proxy.core.exchange import Exchange
from proxy.core.failures import FailureKind
from proxy.routing import failover
from proxy.routing.send import AttemptFailed

__all__ = ["events"]  # the fixture, shared with test_failover_seam


def fresh(config: Config) -> Exchange:
    """An exchange that arrived just now (its deadline is still ahead)."""
    ex: Exchange = exchange(config)
    ex.started = time.monotonic()
    return ex


async def test_a_single_upstream_route_retries_the_same_upstream_after_a_5xx(
    events: Events,
) -> None:
    config, balancer = setup([{"a": 1}], max_attempts=3, consecutive=5)
    send = ScriptedSend({"a": [FakeReply(500), FakeReply(502), FakeReply(200)]})
    ex = fresh(config)
    started = time.monotonic()
    with await failover.run(send, balancer, ex) as win:
        assert win.reply is not None and win.reply.status == 200
    assert ex.attempts == 3 and ex.tried == ["a", "a", "a"]
    # Two jittered pauses: at least half of 0.1 s and of 0.2 s.
    assert time.monotonic() - started >= 0.15
    assert events.failed == [("a", FailureKind.UPSTREAM_5XX)] * 2
    assert stats(config, balancer, "a").inflight == 0


async def test_with_the_sibling_ejected_the_last_upstream_is_retried(events: Events) -> None:
    config, balancer = setup([{"a": 1, "b": 1}], max_attempts=3, consecutive=5)
    b = stats(config, balancer, "b")
    b.ejected_until = time.monotonic() + 60  # ejected by earlier traffic
    send = ScriptedSend({"a": [FakeReply(503), FakeReply(200)], "b": []})
    ex = fresh(config)
    with await failover.run(send, balancer, ex):
        pass
    assert ex.tried == ["a", "a"]


async def test_retries_stop_at_max_attempts_with_the_last_cause(events: Events) -> None:
    config, balancer = setup([{"a": 1}], max_attempts=2, consecutive=5)
    send = ScriptedSend({"a": [FakeReply(500), FakeReply(500), FakeReply(200)]})
    ex = fresh(config)
    with pytest.raises(GatewayError) as err:
        await failover.run(send, balancer, ex)
    assert err.value.status == 502 and ex.attempts == 2
    assert len(send.sent) == 2


async def test_an_upstream_ejected_by_its_failure_is_not_retried(events: Events) -> None:
    config, balancer = setup([{"a": 1}], max_attempts=3, consecutive=1, panic=False)
    send = ScriptedSend({"a": [FakeReply(500), FakeReply(200)]})
    ex = fresh(config)
    with pytest.raises(GatewayError):
        await failover.run(send, balancer, ex)
    assert len(send.sent) == 1


@pytest.mark.parametrize(
    "outcome",
    [
        FakeReply(401),
        FakeReply(429, b"{}", {"Retry-After": "1"}),
        FakeReply(501),
        AttemptFailed(FailureKind.TTFB_TIMEOUT, "slow"),
    ],
)
async def test_failures_that_would_repeat_are_not_retried_on_the_same_upstream(
    events: Events, outcome: FakeReply | AttemptFailed
) -> None:
    config, balancer = setup([{"a": 1}], max_attempts=3, consecutive=5)
    send = ScriptedSend({"a": [outcome, FakeReply(200)]})
    ex = fresh(config)
    with pytest.raises(GatewayError):
        await failover.run(send, balancer, ex)
    assert len(send.sent) == 1


async def test_no_retry_once_the_request_deadline_is_spent(events: Events) -> None:
    config, balancer = setup([{"a": 1}], max_attempts=3, consecutive=5)
    send = ScriptedSend({"a": [FakeReply(500), FakeReply(200)]})
    ex = exchange(config)
    # Arrived longer ago than the upstream's TTFB limit (60 s by default).
    ex.started = time.monotonic() - 61
    with pytest.raises(GatewayError):
        await failover.run(send, balancer, ex)
    assert len(send.sent) == 1


async def test_an_answer_above_the_cap_is_a_502_without_failover(events: Events) -> None:
    config, balancer = setup([{"a": 1}, {"b": 1}])
    too_big = AttemptFailed(FailureKind.RESPONSE_TOO_LARGE, "more than 10 bytes")
    send = ScriptedSend({"a": [too_big], "b": [FakeReply()]})
    ex = fresh(config)
    with pytest.raises(GatewayError) as err:
        await failover.run(send, balancer, ex)
    assert (err.value.status, err.value.code) == (502, "upstream_response_too_large")
    assert err.value.should_retry is False
    assert [n for n, _ in send.sent] == ["a"]
    assert stats(config, balancer, "a").failures == 0  # not ill health
