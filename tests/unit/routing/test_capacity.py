"""Capacity headroom of an upstream: declared limits, own use and provider-reported remaining."""

from __future__ import annotations

import random

from proxy.config.compiler import compile_data
from proxy.config.values import Config, Upstream
from proxy.routing.balancer import Balancer
from proxy.routing.capacity import CapacityState
from proxy.routing.stats import StatsRegistry

T0 = 6000.0


def config(strategy: str, **ups: dict[str, object]) -> Config:
    upstreams = {n: {"base_url": "http://127.0.0.1:9/v1", **u} for n, u in ups.items()}
    routes = {"r": {"strategy": strategy, "tiers": [dict.fromkeys(ups, 1)]}}
    return compile_data({"upstreams": upstreams, "routes": routes}, {})


def up(**limits: object) -> Upstream:
    return config("capacity", u=limits).upstreams["u"]


def test_own_use_counts_against_declared_limits() -> None:
    u = up(rpm=2, tpm=1000)
    c = CapacityState()
    assert c.headroom(u, 100, T0) == 0.5  # one of two requests left after this one
    c.spend(100, T0)
    assert c.headroom(u, 100, T0) == 0.0
    c.spend(100, T0)
    assert c.headroom(u, 100, T0) < 0
    assert 0 < c.wait_s(u, 100, T0) <= 60
    assert c.headroom(u, 2000, T0 + 300) < 0  # larger than the tpm itself


def test_provider_remaining_is_trusted_until_its_reset() -> None:
    u = up(rpm=100)
    c = CapacityState()
    c.observe({"x-ratelimit-remaining-requests": "1", "x-ratelimit-reset-requests": "2s"}, T0)
    assert c.headroom(u, 0, T0) == 0.0
    c.spend(0, T0)
    assert c.headroom(u, 0, T0 + 1) < 0
    assert c.wait_s(u, 0, T0 + 1) == 1.0
    assert c.headroom(u, 0, T0 + 3) > 0.9
    c.observe({"anthropic-ratelimit-requests-remaining": "0"}, T0 + 10)
    assert c.headroom(u, 0, T0 + 10) < 0


def test_capacity_picks_the_most_headroom_and_never_passes_a_limit() -> None:
    cfg = config("capacity", small={"rpm": 2}, big={"rpm": 4})
    b = Balancer(StatsRegistry(), random.Random(1))
    b.adopt(cfg)
    route = cfg.routes["r"]
    picks = []
    for _ in range(7):
        choice = b.choose(route, 0, (), T0)
        if choice is None:
            break
        picks.append(choice.member.upstream.name)
        choice.stats.capacity.spend(0, T0)
    assert len(picks) == 6
    assert picks[0] == "big"
    assert picks.count("big") == 4 and picks.count("small") == 2
    blocked = b.blocked(route, (), T0)
    assert blocked.rate_limited
    assert 0 < blocked.retry_after_s <= 60
    assert b.choose_panic(route, (), T0) is None


def test_cost_picks_the_cheapest_for_this_requests_tokens() -> None:
    cfg = config(
        "cost",
        cheap_in={"price": {"input_per_mtok": 0.1, "output_per_mtok": 10.0}},
        cheap_out={"price": {"input_per_mtok": 10.0, "output_per_mtok": 0.1}},
    )
    b = Balancer(StatsRegistry(), random.Random(1))
    b.adopt(cfg)
    route = cfg.routes["r"]
    long_prompt = b.choose(route, 0, (), T0, (100_000, 10))
    long_answer = b.choose(route, 0, (), T0, (10, 100_000))
    assert long_prompt is not None and long_answer is not None
    assert long_prompt.member.upstream.name == "cheap_in"
    assert long_answer.member.upstream.name == "cheap_out"
    tried = b.choose(route, 0, ("cheap_in",), T0, (100_000, 10))
    assert tried is not None and tried.member.upstream.name == "cheap_out"


def test_cost_uses_the_shipped_table_by_model_and_ties_by_latency() -> None:
    table_cfg = config("cost", mini={"model": "gpt-4o-mini"}, big={"model": "gpt-4o"})
    from proxy.governance.pricetable import shipped

    b = Balancer(StatsRegistry(), random.Random(1), shipped())
    b.adopt(table_cfg)
    choice = b.choose(table_cfg.routes["r"], 0, (), T0, (1000, 1000))
    assert choice is not None and choice.member.upstream.name == "mini"
    same = config("cost", a={"model": "gpt-4o-mini"}, b={"model": "gpt-4o-mini"})
    b2 = Balancer(StatsRegistry(), random.Random(1), shipped())
    b2.adopt(same)
    for _ in range(3):
        b2.registry.get(same.upstreams["a"]).record_ttfb(0.5, T0)
        b2.registry.get(same.upstreams["b"]).record_ttfb(0.05, T0)
    choice = b2.choose(same.routes["r"], 0, (), T0, (1000, 1000))
    assert choice is not None and choice.member.upstream.name == "b"
