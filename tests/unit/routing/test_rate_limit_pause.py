"""A 429's pause: capped by max_rate_limit_pause_s, ended by one probe, cleared by a reload."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from test_failover_seam import FakeReply, ScriptedSend  # type: ignore[import-not-found]

from proxy.config.compiler import compile_data
from proxy.config.values import Config, Endpoint
from proxy.core.errors import GatewayError
from proxy.core.exchange import Exchange
from proxy.ops import logs
from proxy.providers.openai import OpenAI
from proxy.providers.openai_body import peek
from proxy.routing import failover
from proxy.routing.attempt import Attempt
from proxy.routing.balancer import Balancer
from proxy.routing.stats import StatsRegistry
from proxy.transport.headers import forward_headers


def config(pause: float | None = None, **a_extra: object) -> Config:
    defaults: dict[str, Any] = {"max_attempts": 1}
    if pause is not None:
        defaults["max_rate_limit_pause_s"] = pause
    data: dict[str, Any] = {
        "defaults": defaults,
        "upstreams": {"a": {"base_url": "http://a.example/v1", **a_extra}},
        "routes": {"chat": {"tiers": [{"a": 1}]}},
    }
    return compile_data(data, {})


def new_exchange(snap: Config) -> Exchange:
    body = orjson.dumps({"model": "chat", "messages": []})
    headers = CIMultiDictProxy(CIMultiDict[str]())
    return Exchange(
        id="rid",
        endpoint=Endpoint.CHAT,
        snap=snap,
        started=time.monotonic(),
        client_headers=headers,
        body=body,
        peek=peek(body),
        route=snap.routes["chat"],
        forward_headers=forward_headers(headers, "rid"),
    )


def balancer_for(snap: Config) -> Balancer:
    b = Balancer(StatsRegistry(), random.Random(1))
    b.adopt(snap)
    return b


async def limited_for(snap: Config, headers: dict[str, str]) -> float:
    b = balancer_for(snap)
    send = ScriptedSend({"a": [FakeReply(429, b"{}", headers)]})
    with pytest.raises(GatewayError) as err:
        await failover.run(send, b, new_exchange(snap))
    assert err.value.status == 429
    return b.registry.get(snap.upstreams["a"]).limited_until - time.monotonic()


@pytest.mark.parametrize(
    "headers",
    [{"Retry-After": "86400"}, {"Retry-After": "Fri, 31 Dec 2099 23:59:59 GMT"}],
)
async def test_a_runaway_retry_after_is_capped_at_the_default_60s(headers: dict[str, str]) -> None:
    assert 59.0 < await limited_for(config(), headers) <= 60.0


async def test_the_cap_is_a_setting() -> None:
    assert 4.0 < await limited_for(config(pause=5), {"Retry-After": "86400"}) <= 5.0
    assert 1.0 < await limited_for(config(pause=5), {"Retry-After": "2"}) <= 2.0


def test_when_the_pause_ends_one_probe_goes_and_others_wait() -> None:
    snap = config()
    b = balancer_for(snap)
    route = snap.routes["chat"]
    st = b.registry.get(snap.upstreams["a"])
    now = time.monotonic()
    st.record_rate_limit(now - 2.0, 1.0)  # paused, and the pause is over
    first = b.choose(route, 0, [], now)
    assert first is not None
    probe = Attempt(new_exchange(snap), first, OpenAI(), b.rng)
    assert b.choose(route, 0, [], time.monotonic()) is None  # the probe is in flight
    assert probe.answered(FakeReply(200))  # the pause is over for everyone
    assert b.choose(route, 0, [], time.monotonic()) is not None
    probe.end(close=False)
    assert st.available(time.monotonic()) and not st.limit_probe


def test_a_probe_answered_429_pauses_again() -> None:
    snap = config()
    b = balancer_for(snap)
    st = b.registry.get(snap.upstreams["a"])
    st.record_rate_limit(time.monotonic() - 2.0, 1.0)
    choice = b.choose(snap.routes["chat"], 0, [], time.monotonic())
    assert choice is not None
    probe = Attempt(new_exchange(snap), choice, OpenAI(), b.rng)
    assert not probe.answered(FakeReply(429, b"{}", {"Retry-After": "3"}))
    assert not st.available(time.monotonic())
    assert st.limit_probe and not st.limit_probing
    assert 2.0 < st.limited_until - time.monotonic() <= 3.0


def test_a_probe_that_fails_otherwise_still_ends_the_pause() -> None:
    snap = config()
    b = balancer_for(snap)
    st = b.registry.get(snap.upstreams["a"])
    st.record_rate_limit(time.monotonic() - 2.0, 1.0)
    choice = b.choose(snap.routes["chat"], 0, [], time.monotonic())
    assert choice is not None
    probe = Attempt(new_exchange(snap), choice, OpenAI(), b.rng)
    assert not probe.answered(FakeReply(500))
    assert st.available(time.monotonic()) and not st.limit_probe


def test_a_reload_that_changes_the_upstream_clears_its_pause() -> None:
    old = config()
    b = balancer_for(old)
    st = b.registry.get(old.upstreams["a"])
    st.record_rate_limit(time.monotonic(), 300.0)
    b.adopt(config())  # the same definition: the pause stays
    assert b.registry.get(old.upstreams["a"]) is st and st.limited_until > time.monotonic()
    new = config(ttfb_timeout_s=7)  # only a timeout changed: stats kept, pause cleared
    b.adopt(new)
    assert b.registry.get(new.upstreams["a"]) is st
    assert st.available(time.monotonic()) and not st.limit_probe


def test_a_probe_abandoned_without_an_answer_leaves_the_probe_to_the_next_attempt() -> None:
    snap = config()
    b = balancer_for(snap)
    st = b.registry.get(snap.upstreams["a"])
    st.record_rate_limit(time.monotonic() - 2.0, 1.0)
    choice = b.choose(snap.routes["chat"], 0, [], time.monotonic())
    assert choice is not None
    Attempt(new_exchange(snap), choice, OpenAI(), b.rng).abandon()  # the client went away
    assert st.limit_probe and st.available(time.monotonic())
    again = b.choose(snap.routes["chat"], 0, [], time.monotonic())
    assert again is not None
    Attempt(new_exchange(snap), again, OpenAI(), b.rng)
    assert st.limit_probing  # this one is the probe now


async def test_the_capped_pause_says_what_was_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(logs, "attempt_failed", lambda rid, up, kind, detail: seen.append(detail))
    assert 0.0 < await limited_for(config(pause=0.5), {"Retry-After": "86400"}) <= 0.5
    assert seen == ["status 429, paused 0.5s (max_rate_limit_pause_s), asked 86400s"]


async def test_a_cap_below_the_1s_default_applies_to_a_429_without_a_hint() -> None:
    assert 0.0 < await limited_for(config(pause=0.25), {}) <= 0.25
