"""Tests for proxy.routing.hedge_budget and the `hedge` route setting: pure, with a fake clock."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.config.compiler import compile_data
from proxy.config.hedging import Hedge
from proxy.config.values import ConfigError
from proxy.routing.hedge_budget import MIN_SAMPLES, SAMPLES, HedgeBook, RouteBudget, SlidingCount


def test_sliding_count_forgets_after_a_minute() -> None:
    c = SlidingCount()
    c.add(0.0)
    c.add(15.0, 2)
    assert c.total(15.0) == 3
    assert c.total(59.0) == 3
    assert c.total(61.0) == 2  # the first 10 s bucket left the window
    assert c.total(200.0) == 0
    c.add(200.0)
    assert c.total(200.0) == 1


def test_budget_is_a_share_of_requests_with_a_minimum() -> None:
    policy = Hedge(after_s=0.1, budget_pct=10, min_per_minute=1)
    b = RouteBudget()
    b.requests.add(0.0, 5)
    assert b.allows(policy, 0.0)
    b.hedges.add(0.0)
    assert not b.allows(policy, 0.0)  # 1 hedge of 5 requests: the minimum is used
    b.requests.add(1.0, 15)
    assert b.allows(policy, 1.0)  # 20 requests: 2 hedges allowed
    b.hedges.add(1.0)
    assert not b.allows(policy, 1.0)
    assert b.allows(policy, 70.0)  # a minute later the hedges have left the window


def test_zero_budget_never_hedges() -> None:
    b = RouteBudget()
    b.requests.add(0.0, 1000)
    assert not b.allows(Hedge(after_s=0.1, budget_pct=0, min_per_minute=0), 0.0)


def test_percentile_delay_uses_the_upstream_window_with_a_floor() -> None:
    book = HedgeBook()
    policy = Hedge(percentile=0.95, floor_s=0.05)
    assert book.delay_s(policy, "a") == pytest.approx(0.2)  # unknown yet: floor x 4
    for i in range(SAMPLES + 36):  # only the latest SAMPLES count: 0.136 .. 0.199
        book.ttfb("a").add(0.1 + i / 1000)
    assert book.delay_s(policy, "a") == pytest.approx(0.196)  # the 61st of 64
    for _ in range(MIN_SAMPLES * 8):
        book.ttfb("b").add(0.001)
    assert book.delay_s(policy, "b") == 0.05
    assert book.delay_s(Hedge(after_s=0.8), "a") == 0.8


def compile_hedge(hedge: object) -> Any:
    data = {
        "upstreams": {"a": {"base_url": "http://a.example/v1"}},
        "routes": {"chat": {"tiers": [{"a": 1}], "hedge": hedge}},
    }
    return compile_data(data, {}).routes["chat"].hedge


def test_hedge_settings_are_read_with_units() -> None:
    h = compile_hedge({"after_ms": 800, "budget_pct": 5, "min_per_minute": 0})
    assert h == Hedge(after_s=0.8, budget_pct=5.0, min_per_minute=0)
    h = compile_hedge({"after": "p99.5", "floor_ms": 250})
    assert h.percentile == pytest.approx(0.995) and h.floor_s == 0.25 and h.after_s is None


@pytest.mark.parametrize(
    ("hedge", "message"),
    [
        ({}, 'routes.chat.hedge: needs after_ms = N or after = "pNN"'),
        ({"after": "p100"}, "routes.chat.hedge.after: must be a percentile"),
        ({"after": 95}, "routes.chat.hedge.after: must be a percentile"),
        ({"after_ms": 800, "after": "p95"}, "routes.chat.hedge: after_ms and after exclude"),
        ({"after_ms": 0}, "routes.chat.hedge.after_ms: must be a number >= 1"),
        ({"after_ms": 5, "budget": 3}, "routes.chat.hedge.budget: unknown setting"),
        (800, "routes.chat.hedge: must be a table"),
    ],
)
def test_bad_hedge_settings_name_their_path(hedge: object, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        compile_hedge(hedge)
    assert any(e.startswith(message) for e in err.value.errors), err.value.errors


def test_no_hedge_by_default() -> None:
    data = {
        "upstreams": {"a": {"base_url": "http://a.example/v1"}},
        "routes": {"chat": {"tiers": [{"a": 1}]}},
    }
    assert compile_data(data, {}).routes["chat"].hedge is None
