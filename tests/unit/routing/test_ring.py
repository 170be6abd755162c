"""Tests for proxy.routing.ring and the sticky strategy: stability, minimal movement, bounded loads."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config.compiler import compile_data
from proxy.config.values import ConfigError
from proxy.routing.balancer import Balancer
from proxy.routing.ring import Ring, key_hash
from proxy.routing.stats import StatsRegistry
from proxy.routing.sticky import KeyValues

NOW = 1000.0
names = st.lists(st.text("abcdefghij", min_size=1, max_size=6), min_size=2, max_size=8, unique=True)
keys = st.lists(st.binary(min_size=1, max_size=16), min_size=1, max_size=60)


def owners(ring: Ring, ks: list[bytes], candidates: set[int]) -> list[int | None]:
    return [ring.lookup(key_hash(k), candidates) for k in ks]


@settings(max_examples=60, deadline=None)
@given(names, keys, st.data())
def test_removing_one_member_moves_only_its_keys(ns: list[str], ks: list[bytes], data: Any) -> None:
    members = [(n, 1 + len(n) % 3) for n in ns]
    gone = data.draw(st.integers(0, len(ns) - 1))
    full = Ring(members)
    rest = [m for i, m in enumerate(members) if i != gone]
    smaller = Ring(rest)
    before = owners(full, ks, set(range(len(members))))
    after = owners(smaller, ks, set(range(len(rest))))
    for b, a in zip(before, after, strict=True):
        assert b is not None and a is not None
        if b != gone:  # a key of a kept member stays on it
            assert rest[a][0] == members[b][0]


@settings(max_examples=60, deadline=None)
@given(names, keys, st.data())
def test_unavailable_member_falls_through_to_next_and_others_keep(
    ns: list[str], ks: list[bytes], data: Any
) -> None:
    ring = Ring([(n, 2) for n in ns])
    down = data.draw(st.integers(0, len(ns) - 1))
    everyone = set(range(len(ns)))
    before = owners(ring, ks, everyone)
    after = owners(ring, ks, everyone - {down})
    for b, a in zip(before, after, strict=True):
        assert a != down
        if b != down:
            assert a == b


@given(names, st.binary(min_size=1, max_size=32))
def test_same_key_same_member(ns: list[str], k: bytes) -> None:
    assert owners(Ring([(n, 1) for n in ns]), [k], set(range(len(ns)))) == owners(
        Ring([(n, 1) for n in ns]), [k], set(range(len(ns)))
    )


def test_shares_follow_weights() -> None:
    ring = Ring([("a", 3), ("b", 1)])
    got = Counter(ring.lookup(key_hash(str(i).encode()), {0, 1}) for i in range(8000))
    assert 0.68 < got[0] / 8000 < 0.82


def test_bounded_load_walks_past_a_busy_member() -> None:
    ring = Ring([("a", 1), ("b", 1), ("c", 1)])
    k = key_hash(b"session-1")
    home = ring.lookup(k, {0, 1, 2})
    assert home is not None
    inflight = [0, 0, 0]
    assert ring.lookup(k, {0, 1, 2}, inflight) == home
    inflight[home] = 30  # far above 1.25 x its share of 31 in flight
    moved = ring.lookup(k, {0, 1, 2}, inflight)
    assert moved is not None and moved != home


def test_no_candidate_on_the_ring() -> None:
    assert Ring([("a", 1)]).lookup(5, set()) is None
    assert Ring([]).lookup(5, {0}) is None


# --- through the balancer ---------------------------------------------------------------------


def build(sticky_key: str = "header:x-session-id") -> tuple[Balancer, Any]:
    data: dict[str, Any] = {
        "upstreams": {
            n: {"base_url": f"http://127.0.0.1:{9001 + i}/v1"} for i, n in enumerate("abcd")
        },
        "routes": {
            "r": {
                "strategy": "sticky",
                "sticky_key": sticky_key,
                "tiers": [{"a": 1, "b": 1, "c": 1, "d": 1}],
            }
        },
    }
    config = compile_data(data, {})
    balancer = Balancer(StatsRegistry(), random.Random(7))
    balancer.adopt(config)
    return balancer, config


def test_balancer_same_session_same_upstream_and_ring_built_once() -> None:
    balancer, config = build()
    route = config.routes["r"]
    assert route.sticky
    picks = set()
    kv = KeyValues({"x-session-id": "s-42"}, None, None)
    for _ in range(20):
        choice = balancer.choose(route, 0, [], NOW, keys=kv)
        assert choice is not None
        picks.add(choice.member.upstream.name)
    assert len(picks) == 1
    ring = balancer.tier_state(route.tiers[0]).ring
    balancer.choose(route, 0, [], NOW, keys=KeyValues({"x-session-id": "s-43"}, None, None))
    assert balancer.tier_state(route.tiers[0]).ring is ring
    # the sticky upstream tried already: the next one on the ring, not an error
    again = balancer.choose(route, 0, list(picks), NOW, keys=kv)
    assert again is not None and again.member.upstream.name not in picks


def test_balancer_without_key_spreads_by_weight() -> None:
    balancer, config = build("user")
    route = config.routes["r"]
    kv = KeyValues({}, None, None)
    got = Counter(
        c.member.upstream.name
        for _ in range(40)
        if (c := balancer.choose(route, 0, [], NOW, keys=kv)) is not None
    )
    assert set(got) == {"a", "b", "c", "d"}
    users = {
        c.member.upstream.name
        for _ in range(10)
        if (c := balancer.choose(route, 0, [], NOW, keys=KeyValues({}, "u1", None)))
    }
    assert len(users) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({}, "routes.r.sticky_key: is required"),
        ({"sticky_key": "cookie:x"}, 'routes.r.sticky_key: unknown key source "cookie:x"'),
        ({"sticky_key": "header:"}, "routes.r.sticky_key: needs a header name"),
        ({"sticky_key": 3}, "routes.r.sticky_key: must be"),
    ],
)
def test_sticky_config_errors(extra: dict[str, Any], message: str) -> None:
    data: dict[str, Any] = {
        "upstreams": {"a": {"base_url": "http://127.0.0.1:9001/v1"}},
        "routes": {"r": {"strategy": "sticky", "tiers": [{"a": 1}], **extra}},
    }
    with pytest.raises(ConfigError) as err:
        compile_data(data, {})
    assert any(e.startswith(message) for e in err.value.errors), err.value.errors


def test_sticky_key_without_sticky_strategy_is_an_error() -> None:
    data: dict[str, Any] = {
        "upstreams": {"a": {"base_url": "http://127.0.0.1:9001/v1"}},
        "routes": {"r": {"sticky_key": "user", "tiers": [{"a": 1}]}},
    }
    with pytest.raises(ConfigError, match="applies only with"):
        compile_data(data, {})
