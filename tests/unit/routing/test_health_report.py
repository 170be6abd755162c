"""Each upstream's reported state follows its stats: ejected, probe pending, paused, drained."""

from __future__ import annotations

import random

from proxy.config.compiler import compile_data
from proxy.config.values import Config
from proxy.core.failures import FailureKind
from proxy.routing.health_report import selectable, upstream_states
from proxy.routing.stats import StatsRegistry

WALL = 1_800_000_000.0


def setup() -> tuple[Config, StatsRegistry]:
    data = {
        "defaults": {"ejection": {"consecutive_failures": 2, "base_s": 10, "jitter": 0}},
        "upstreams": {n: {"base_url": f"http://{n}.example/v1"} for n in ("a", "b", "c", "d")},
        "routes": {"chat": {"tiers": [{"a": 1, "b": 0}, {"c": 2}]}},
    }
    config = compile_data(data, {})
    registry = StatsRegistry()
    registry.reconcile(config.upstreams.values())
    return config, registry


def test_fresh_upstreams_are_healthy_and_weight_zero_is_drained() -> None:
    config, registry = setup()
    states = upstream_states(config, registry, 100.0, WALL)
    assert states == {
        "a": {"state": "healthy"},
        "b": {"state": "drained"},
        "c": {"state": "healthy"},
        "d": {"state": "unused"},
    }
    assert selectable(states)


def test_an_ejection_reports_until_when_and_why_then_probe_pending_then_healthy() -> None:
    config, registry = setup()
    st = registry.get(config.upstreams["a"])
    rng = random.Random(0)
    st.record_failure(100.0, rng, FailureKind.CONNECT)
    st.record_failure(100.0, rng, FailureKind.RESET)
    a = upstream_states(config, registry, 104.0, WALL)["a"]
    assert a == {
        "state": "ejected",
        "until": "2027-01-15T08:00:06.000Z",  # WALL + 6 s
        "in_s": 6.0,
        "streak": 2,
        "failure": "reset",
    }
    # The ejection is over but nothing has tried it: not "healthy" yet.
    a = upstream_states(config, registry, 111.0, WALL)["a"]
    assert a == {"state": "probe_pending", "failure": "reset"}
    assert st.acquire(111.0) is True
    assert upstream_states(config, registry, 111.0, WALL)["a"]["state"] == "probing"
    st.release()
    st.record_success(111.5)
    assert upstream_states(config, registry, 112.0, WALL)["a"] == {"state": "healthy"}


def test_a_429_pause_reports_its_end() -> None:
    config, registry = setup()
    registry.get(config.upstreams["c"]).record_rate_limit(100.0, 30.0)
    c = upstream_states(config, registry, 100.0, WALL)["c"]
    assert c["state"] == "rate_limited" and c["in_s"] == 30.0
    assert c["until"] == "2027-01-15T08:00:30.000Z"


def test_not_ready_when_only_drained_or_unselectable_upstreams_are_left() -> None:
    config, registry = setup()
    rng = random.Random(0)
    for name in ("a", "c"):
        registry.get(config.upstreams[name]).eject(100.0, rng)
    states = upstream_states(config, registry, 101.0, WALL)
    assert not selectable(states)
    assert selectable(upstream_states(config, registry, 111.0, WALL))  # probes pending
