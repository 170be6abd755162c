"""Tests for proxy.routing.balancer: tier order, tried and zero-weight upstreams, panic, blocked."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from proxy.config.compiler import compile_data
from proxy.config.values import Config, Route
from proxy.routing.balancer import Balancer, Blocked
from proxy.routing.stats import StatsRegistry, UpstreamStats

NOW = 1000.0


def build(
    tiers: list[dict[str, int]],
    strategy: str = "round_robin",
    names: tuple[str, ...] = ("a", "b", "c", "d"),
) -> tuple[Balancer, Config, Route]:
    data: dict[str, Any] = {
        "defaults": {"ejection": {"consecutive_failures": 1, "base_s": 10, "max_s": 100}},
        "upstreams": {
            n: {"base_url": f"http://127.0.0.1:{9001 + i}/v1"} for i, n in enumerate(names)
        },
        "routes": {"r": {"strategy": strategy, "tiers": tiers}},
    }
    config = compile_data(data, {})
    balancer = Balancer(StatsRegistry(), random.Random(1234))
    balancer.adopt(config)
    return balancer, config, config.routes["r"]


def stats(balancer: Balancer, config: Config, name: str) -> UpstreamStats:
    return balancer.registry.get(config.upstreams[name])


def eject(balancer: Balancer, config: Config, name: str, until: float) -> None:
    st_ = stats(balancer, config, name)
    st_.ejected_until = until
    st_.ejected_at = NOW
    st_.ejections = 1


def limit(balancer: Balancer, config: Config, name: str, delay_s: float) -> None:
    stats(balancer, config, name).record_rate_limit(NOW, delay_s)


def chosen(balancer: Balancer, route: Route, tried: list[str] | None = None, start: int = 0) -> Any:
    choice = balancer.choose(route, start, tried or [], NOW)
    return None if choice is None else (choice.member.upstream.name, choice.tier_index)


# --- choose ------------------------------------------------------------------------------------


def test_tier_zero_first_while_it_has_candidates() -> None:
    balancer, _, route = build([{"a": 1, "b": 1}, {"c": 1}])
    picks = Counter(chosen(balancer, route) for _ in range(20))
    assert picks == {("a", 0): 10, ("b", 0): 10}


def test_next_tier_only_when_tier_zero_has_no_available_candidate() -> None:
    balancer, config, route = build([{"a": 1, "b": 1}, {"c": 1}])
    eject(balancer, config, "a", NOW + 50)
    assert {chosen(balancer, route) for _ in range(10)} == {("b", 0)}
    limit(balancer, config, "b", 5.0)
    assert {chosen(balancer, route) for _ in range(10)} == {("c", 1)}


def test_choice_carries_the_registry_stats() -> None:
    balancer, config, route = build([{"a": 1}])
    choice = balancer.choose(route, 0, [], NOW)
    assert choice is not None
    assert choice.stats is stats(balancer, config, "a")
    assert choice.member.weight == 1


def test_probing_upstream_is_not_chosen() -> None:
    balancer, config, route = build([{"a": 1}, {"b": 1}])
    eject(balancer, config, "a", NOW - 1)
    assert stats(balancer, config, "a").acquire(NOW) is True
    assert chosen(balancer, route) == ("b", 1)


def test_expired_ejection_is_chosen_again() -> None:
    balancer, config, route = build([{"a": 1}, {"b": 1}])
    eject(balancer, config, "a", NOW - 1)
    assert chosen(balancer, route) == ("a", 0)


def test_tried_upstreams_are_skipped() -> None:
    balancer, _, route = build([{"a": 1, "b": 1}, {"c": 1, "d": 1}])
    assert chosen(balancer, route, ["a"]) == ("b", 0)
    assert chosen(balancer, route, ["a", "b"])[1] == 1
    assert chosen(balancer, route, ["a", "b", "c"]) == ("d", 1)
    assert chosen(balancer, route, ["a", "b", "c", "d"]) is None


def test_start_tier_skips_earlier_tiers() -> None:
    balancer, _, route = build([{"a": 1}, {"b": 1}, {"c": 1}])
    assert chosen(balancer, route, start=1) == ("b", 1)
    assert chosen(balancer, route, start=2) == ("c", 2)
    assert chosen(balancer, route, start=3) is None


def test_weight_zero_is_never_chosen() -> None:
    balancer, config, route = build([{"a": 0, "b": 1}, {"c": 1}], strategy="weighted")
    assert {chosen(balancer, route) for _ in range(50)} == {("b", 0)}
    eject(balancer, config, "b", NOW + 10)
    assert {chosen(balancer, route) for _ in range(50)} == {("c", 1)}
    eject(balancer, config, "c", NOW + 10)
    assert chosen(balancer, route) is None
    panic = balancer.choose_panic(route, [], NOW)
    assert panic is not None
    assert panic.member.upstream.name != "a"


@pytest.mark.parametrize("strategy", ["weighted", "round_robin", "latency", "least_busy"])
def test_weight_zero_never_chosen_by_any_strategy(strategy: str) -> None:
    balancer, _, route = build([{"a": 0, "b": 1, "c": 0}], strategy=strategy)
    assert {chosen(balancer, route) for _ in range(100)} == {("b", 0)}


def test_weighted_tier_through_balancer() -> None:
    balancer, _, route = build([{"a": 3, "b": 1}], strategy="weighted")
    assert [chosen(balancer, route)[0] for _ in range(8)] == list("aabaaaba")


def test_tier_state_resets_when_weights_change() -> None:
    balancer, _, route = build([{"a": 3, "b": 1}], strategy="weighted")
    chosen(balancer, route)
    state = balancer.tier_state(route.tiers[0])
    assert balancer.tier_state(route.tiers[0]) is state
    _, config2, route2 = build([{"a": 1, "b": 3}], strategy="weighted")
    balancer.adopt(config2)
    fresh = balancer.tier_state(route2.tiers[0])
    assert fresh is not state
    assert fresh.signature == (("a", 1), ("b", 3))
    assert [chosen(balancer, route2)[0] for _ in range(4)] == list("babb")


def test_tier_state_survives_a_reload_that_keeps_the_weights() -> None:
    balancer, _, route = build([{"a": 3, "b": 1}], strategy="weighted")
    first = [chosen(balancer, route)[0] for _ in range(2)]
    state = balancer.tier_state(route.tiers[0])
    _, config2, route2 = build([{"a": 3, "b": 1}], strategy="weighted")
    balancer.adopt(config2)
    assert route2.tiers[0] is not route.tiers[0]
    assert balancer.tier_state(route2.tiers[0]) is state
    # The rotation goes on where it was rather than restarting at "a a".
    assert first + [chosen(balancer, route2)[0] for _ in range(6)] == list("aabaaaba")


def test_adopt_keeps_stats_of_unchanged_upstreams() -> None:
    balancer, config, _ = build([{"a": 1, "b": 1}])
    stats(balancer, config, "a").record_ttfb(0.3, NOW)
    _, config2, _ = build([{"a": 1}], names=("a",))
    assert balancer.adopt(config2) == (["a"], [])
    assert stats(balancer, config2, "a").ewma_ttfb_s == 0.3
    gone = stats(balancer, config, "b")
    assert stats(balancer, config, "b") is not gone  # b left the registry: detached copies


# --- panic -------------------------------------------------------------------------------------


def test_choose_panic_picks_the_soonest_back() -> None:
    balancer, config, route = build([{"a": 1, "b": 1}, {"c": 1}])
    eject(balancer, config, "a", NOW + 30)
    eject(balancer, config, "b", NOW + 20)
    eject(balancer, config, "c", NOW + 5)
    assert chosen(balancer, route) is None
    choice = balancer.choose_panic(route, [], NOW)
    assert choice is not None
    assert (choice.member.upstream.name, choice.tier_index) == ("c", 1)


def test_choose_panic_skips_rate_limited_and_tried() -> None:
    balancer, config, route = build([{"a": 1, "b": 1}, {"c": 1}])
    eject(balancer, config, "a", NOW + 30)
    eject(balancer, config, "b", NOW + 20)
    limit(balancer, config, "c", 1.0)  # back soonest, but a 429 is not to be hammered
    choice = balancer.choose_panic(route, [], NOW)
    assert choice is not None
    assert choice.member.upstream.name == "b"
    choice = balancer.choose_panic(route, ["b"], NOW)
    assert choice is not None
    assert choice.member.upstream.name == "a"
    assert balancer.choose_panic(route, ["a", "b"], NOW) is None


def test_choose_panic_none_when_all_rate_limited() -> None:
    balancer, config, route = build([{"a": 1}, {"b": 1}])
    limit(balancer, config, "a", 3.0)
    limit(balancer, config, "b", 2.0)
    assert chosen(balancer, route) is None
    assert balancer.choose_panic(route, [], NOW) is None


def test_choose_panic_ties_keep_tier_order() -> None:
    balancer, config, route = build([{"a": 1}, {"b": 1}])
    eject(balancer, config, "a", NOW + 10)
    eject(balancer, config, "b", NOW + 10)
    choice = balancer.choose_panic(route, [], NOW)
    assert choice is not None
    assert choice.member.upstream.name == "a"


# --- blocked -------------------------------------------------------------------------------------


def test_blocked_all_rate_limited_reports_shortest_wait() -> None:
    balancer, config, route = build([{"a": 1, "b": 1}, {"c": 1}])
    limit(balancer, config, "a", 7.0)
    limit(balancer, config, "b", 2.5)
    limit(balancer, config, "c", 4.0)
    blocked = balancer.blocked(route, [], NOW)
    assert blocked.rate_limited is True
    assert blocked.retry_after_s == pytest.approx(2.5)


def test_blocked_mixed_is_not_rate_limited() -> None:
    balancer, config, route = build([{"a": 1, "b": 1}])
    limit(balancer, config, "a", 7.0)
    eject(balancer, config, "b", NOW + 3.0)
    assert balancer.blocked(route, [], NOW) == Blocked(retry_after_s=3.0, rate_limited=False)


def test_blocked_ignores_tried_and_zero_weight() -> None:
    balancer, config, route = build([{"a": 1, "b": 1, "c": 0}])
    limit(balancer, config, "a", 9.0)
    eject(balancer, config, "b", NOW + 1.0)
    eject(balancer, config, "c", NOW + 0.5)
    assert balancer.blocked(route, ["b"], NOW) == Blocked(retry_after_s=9.0, rate_limited=True)


def test_blocked_wait_is_at_least_one_second_when_unknown() -> None:
    balancer, config, route = build([{"a": 1}])
    eject(balancer, config, "a", NOW - 1)
    stats(balancer, config, "a").acquire(NOW)  # probing: out of selection, no known wait
    assert balancer.blocked(route, [], NOW) == Blocked(retry_after_s=1.0, rate_limited=False)


def test_blocked_with_only_drained_upstreams_is_not_a_rate_limit() -> None:
    # Every weight is 0 (the operator drained the route): nothing was limited by anyone, so
    # the client should get a 503 "no healthy upstream", not a 429 that blames a provider.
    balancer, _, route = build([{"a": 0, "b": 0}])
    assert chosen(balancer, route) is None
    assert balancer.blocked(route, [], NOW).rate_limited is False
