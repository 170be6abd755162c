"""Tests for proxy.routing.stats: peak EWMA, optimistic start, ejection with growing backoff, probes."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config.compiler import compile_data
from proxy.config.values import Config, Ejection
from proxy.routing.stats import (
    EWMA_DECAY_S,
    FAILURE_DECAY_S,
    IDLE_FORGET_S,
    RETIRED_KEEP_S,
    Health,
    StatsRegistry,
    Transition,
    UpstreamStats,
)

POLICY = Ejection(consecutive_failures=3, base_s=10.0, max_s=25.0, jitter=0.2)


def new(policy: Ejection = POLICY) -> UpstreamStats:
    return UpstreamStats("a", "fp-a", policy)


def jitter_factors(seed: int, n: int, jitter: float = POLICY.jitter) -> list[float]:
    rng = random.Random(seed)
    return [1.0 + jitter * rng.random() for _ in range(n)]


def fail_until_ejected(st_: UpstreamStats, now: float, rng: random.Random) -> None:
    for _ in range(st_.ejection.consecutive_failures - 1):
        assert st_.record_failure(now, rng) is Transition.NONE
    assert st_.record_failure(now, rng) is Transition.EJECTED


# --- peak EWMA -----------------------------------------------------------------------------------


def test_first_sample_is_taken_as_is() -> None:
    s = new()
    s.record_ttfb(0.4, 100.0)
    assert s.ewma_ttfb_s == 0.4
    assert s.sampled_at == 100.0


def test_slower_sample_is_taken_at_once() -> None:
    s = new()
    s.record_ttfb(0.2, 100.0)
    s.record_ttfb(3.0, 100.001)
    assert s.ewma_ttfb_s == 3.0


def test_faster_sample_decays_in_with_time_constant() -> None:
    s = new()
    s.record_ttfb(3.0, 100.0)
    s.record_ttfb(1.0, 105.0)
    w = math.exp(-5.0 / EWMA_DECAY_S)
    assert EWMA_DECAY_S == 10.0
    assert s.ewma_ttfb_s == pytest.approx(w * 3.0 + (1.0 - w) * 1.0, rel=1e-12)
    assert s.ewma_ttfb_s == pytest.approx(2.2130613194252668, rel=1e-12)
    assert s.sampled_at == 105.0


def test_faster_sample_at_same_instant_changes_nothing() -> None:
    s = new()
    s.record_ttfb(3.0, 100.0)
    s.record_ttfb(0.1, 100.0)
    assert s.ewma_ttfb_s == 3.0


def test_faster_sample_long_after_almost_replaces() -> None:
    s = new()
    s.record_ttfb(3.0, 100.0)
    s.record_ttfb(1.0, 100.0 + 10 * EWMA_DECAY_S)
    assert s.ewma_ttfb_s == pytest.approx(1.0 + 2.0 * math.exp(-10), rel=1e-12)


def test_clock_going_backwards_is_clamped() -> None:
    s = new()
    s.record_ttfb(3.0, 100.0)
    s.record_ttfb(1.0, 90.0)
    assert s.ewma_ttfb_s == 3.0


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(st.floats(0.0, 60.0), st.floats(0.0, 30.0)),
        min_size=1,
        max_size=30,
    )
)
def test_ewma_stays_between_min_and_max_sample(samples: list[tuple[float, float]]) -> None:
    s = new()
    now = 0.0
    for gap, ttfb in samples:
        now += gap
        s.record_ttfb(ttfb, now)
        assert s.ewma_ttfb_s is not None
    ewma = s.ewma_ttfb_s
    assert ewma is not None
    values = [t for _, t in samples]
    assert min(values) - 1e-9 <= ewma <= max(values) + 1e-9
    assert ewma >= values[-1] - 1e-9  # peak: never below the latest sample


# --- optimistic start, relaxation, score ---------------------------------------------------------


def test_unmeasured_upstream_has_minimal_score() -> None:
    s = new()
    assert s.ttfb_estimate(500.0) == 0.0
    assert s.latency_score(500.0) == pytest.approx(0.001)
    other = new()
    other.record_ttfb(0.0001, 500.0)
    assert s.latency_score(500.0) < other.latency_score(500.0)


def test_ttfb_estimate_relaxes_with_idle_time() -> None:
    s = new()
    s.record_ttfb(2.0, 100.0)
    assert s.ttfb_estimate(100.0) == 2.0
    assert s.ttfb_estimate(101.0) == 2.0
    assert s.ttfb_estimate(130.0) == pytest.approx(2.0 * math.exp(-30.0 / IDLE_FORGET_S))
    later = [s.ttfb_estimate(100.0 + t) for t in (2.0, 10.0, 60.0, 300.0, 3600.0)]
    assert later == sorted(later, reverse=True)
    assert later[-1] < 1e-20


def test_latency_score_formula() -> None:
    s = new()
    s.record_ttfb(0.5, 100.0)
    s.inflight = 2
    assert s.latency_score(100.0) == pytest.approx(0.501 * 3)
    s.record_failure(100.0, random.Random(0))
    assert s.latency_score(100.0) == pytest.approx(0.501 * 3 * 5.0)
    penalty = math.exp(-30.0 / FAILURE_DECAY_S)
    expected = (0.5 * math.exp(-30.0 / IDLE_FORGET_S) + 0.001) * 3 * (1 + 4 * penalty)
    assert s.latency_score(130.0) == pytest.approx(expected)


def test_failure_score_decays_and_accumulates() -> None:
    s = new(Ejection(consecutive_failures=100))
    rng = random.Random(0)
    s.record_failure(0.0, rng)
    s.record_failure(FAILURE_DECAY_S, rng)
    assert s.failure_score == pytest.approx(1.0 + math.exp(-1.0))
    assert s.failure_at == FAILURE_DECAY_S


# --- ejection --------------------------------------------------------------------------------------


def test_healthy_by_default() -> None:
    s = new()
    assert s.health(0.0) is Health.HEALTHY
    assert s.available(0.0)
    assert s.remaining_s(0.0) == 0.0


def test_ejected_after_consecutive_failures() -> None:
    s = new()
    rng = random.Random(1)
    assert s.record_failure(100.0, rng) is Transition.NONE
    assert s.record_failure(100.5, rng) is Transition.NONE
    assert s.available(100.5)
    assert s.record_failure(101.0, rng) is Transition.EJECTED
    assert s.health(101.0) is Health.EJECTED
    assert not s.available(101.0)
    assert s.ejections == 1


def test_success_resets_the_streak() -> None:
    s = new()
    rng = random.Random(1)
    s.record_failure(100.0, rng)
    s.record_failure(100.0, rng)
    assert s.record_success(100.0) is Transition.NONE
    assert s.record_failure(100.0, rng) is Transition.NONE
    assert s.record_failure(100.0, rng) is Transition.NONE
    assert s.available(100.0)


def test_first_ejection_duration_is_base_with_seeded_jitter() -> None:
    s = new()
    fail_until_ejected(s, 100.0, random.Random(7))
    (factor,) = jitter_factors(7, 1)
    assert s.ejected_until == pytest.approx(100.0 + 10.0 * factor)
    assert s.remaining_s(100.0) == pytest.approx(10.0 * factor)
    assert s.remaining_s(100.0 + 10.0 * factor + 1) == 0.0


def test_ejection_grows_with_repeated_ejections_and_is_capped() -> None:
    s = new()
    rng = random.Random(3)
    factors = jitter_factors(3, 4)
    now = 0.0
    fail_until_ejected(s, now, rng)
    durations = [s.ejected_until - now]
    for _ in range(3):
        now = s.ejected_until
        assert s.acquire(now) is True  # the probe
        assert s.record_failure(now, rng) is Transition.EJECTED
        s.release()
        durations.append(s.ejected_until - now)
    expected = [10.0 * factors[0], 20.0 * factors[1], 25.0 * factors[2], 25.0 * factors[3]]
    assert durations == pytest.approx(expected)
    assert s.ejections == 4


@settings(max_examples=200)
@given(st.integers(0, 2**32), st.integers(1, 12), st.floats(0.0, 1.0))
def test_ejection_duration_bounds(seed: int, n: int, jitter: float) -> None:
    policy = Ejection(consecutive_failures=1, base_s=10.0, max_s=45.0, jitter=jitter)
    s = UpstreamStats("a", "fp", policy)
    rng = random.Random(seed)
    for _ in range(n):
        s.eject(0.0, rng)
    base = min(10.0 * n, 45.0)
    assert base - 1e-9 <= s.ejected_until <= base * (1.0 + jitter) + 1e-9


def test_after_expiry_exactly_one_probe() -> None:
    s = new()
    fail_until_ejected(s, 100.0, random.Random(0))
    until = s.ejected_until
    assert s.acquire(until - 0.001) is False  # still ejected: not the probe
    s.release()
    assert s.health(until) is Health.PROBE_PENDING  # selectable, but not yet known to be back
    assert s.available(until)
    assert s.acquire(until) is True
    assert s.health(until) is Health.PROBING
    assert not s.available(until)
    assert not s.available(until + 1000.0)
    assert s.acquire(until + 1.0) is False
    assert s.inflight == 2


def test_probe_success_recovers() -> None:
    s = new()
    fail_until_ejected(s, 100.0, random.Random(0))
    t = s.ejected_until + 1.0
    assert s.acquire(t) is True
    s.release()
    assert s.record_success(t) is Transition.RECOVERED
    assert s.health(t) is Health.HEALTHY
    assert s.available(t)
    assert s.failures == 0
    assert s.ejected_until == 0.0
    assert s.acquire(t) is False  # no probe any more
    assert s.record_success(t) is Transition.NONE


def test_probe_failure_reejects_longer() -> None:
    s = new()
    rng = random.Random(9)
    factors = jitter_factors(9, 2)
    fail_until_ejected(s, 100.0, rng)
    t = s.ejected_until
    assert s.acquire(t) is True
    assert s.record_failure(t, rng) is Transition.EJECTED
    assert s.health(t) is Health.EJECTED
    assert not s.available(t)
    assert s.ejected_until - t == pytest.approx(20.0 * factors[1])


def test_failure_while_ejected_does_not_extend_it() -> None:
    s = new()
    rng = random.Random(0)
    fail_until_ejected(s, 100.0, rng)
    until = s.ejected_until
    assert s.record_failure(101.0, rng) is Transition.NONE  # a request that started before
    assert s.ejected_until == until
    assert s.ejections == 1


def test_neutral_outcome_ends_the_probe() -> None:
    s = new()
    fail_until_ejected(s, 100.0, random.Random(0))
    t = s.ejected_until
    assert s.acquire(t) is True
    s.release()
    s.record_neutral()
    assert s.available(t)
    assert s.acquire(t) is True  # a new probe may go


def test_ejection_count_resets_after_a_long_healthy_spell() -> None:
    s = new()
    rng = random.Random(5)
    fail_until_ejected(s, 0.0, rng)
    t = s.ejected_until
    s.acquire(t)
    s.release()
    assert s.record_success(t) is Transition.RECOVERED
    assert s.ejections == 1
    s.record_success(0.0 + POLICY.max_s - 1.0)
    assert s.ejections == 1
    s.record_success(0.0 + POLICY.max_s + 1.0)
    assert s.ejections == 0
    factor = 1.0 + POLICY.jitter * random.Random(11).random()
    fail_until_ejected(s, 1000.0, random.Random(11))
    assert s.ejected_until - 1000.0 == pytest.approx(10.0 * factor)


# --- rate limits -----------------------------------------------------------------------------------


def test_rate_limit_is_a_pause_not_a_failure() -> None:
    s = new()
    s.record_rate_limit(100.0, 5.0)
    assert s.failures == 0
    assert s.ejections == 0
    assert s.health(100.0) is Health.RATE_LIMITED
    assert not s.available(104.999)
    assert s.remaining_s(102.0) == pytest.approx(3.0)
    assert s.available(105.0)
    assert s.health(105.0) is Health.HEALTHY
    assert s.remaining_s(105.0) == 0.0


def test_rate_limit_keeps_the_longest_pause() -> None:
    s = new()
    s.record_rate_limit(100.0, 10.0)
    s.record_rate_limit(101.0, 2.0)
    assert s.limited_until == 110.0
    s.record_rate_limit(105.0, 20.0)
    assert s.limited_until == 125.0


def test_rate_limit_on_the_probe_releases_it() -> None:
    s = new()
    fail_until_ejected(s, 100.0, random.Random(0))
    t = s.ejected_until
    assert s.acquire(t) is True
    s.release()
    s.record_rate_limit(t, 3.0)
    assert not s.available(t + 1.0)
    assert s.available(t + 3.0)
    assert s.acquire(t + 3.0) is True


# --- registry ------------------------------------------------------------------------------------


def config(models: dict[str, str], consecutive_failures: int = 5) -> Config:
    upstreams: dict[str, Any] = {
        name: {"base_url": f"http://127.0.0.1:{9000 + i}/v1", "model": model}
        for i, (name, model) in enumerate(models.items())
    }
    data: dict[str, Any] = {
        "defaults": {"ejection": {"consecutive_failures": consecutive_failures}},
        "upstreams": upstreams,
        "routes": {"r": {"tiers": [dict.fromkeys(models, 1)]}},
    }
    return compile_data(data, {})


def test_reconcile_keeps_unchanged_and_resets_changed() -> None:
    reg = StatsRegistry()
    c1 = config({"a": "m1", "b": "m1", "gone": "m1"})
    assert reg.reconcile(c1.upstreams.values()) == ([], ["a", "b", "gone"])
    a, b = reg.get(c1.upstreams["a"]), reg.get(c1.upstreams["b"])
    a.record_ttfb(0.7, 10.0)
    b.record_ttfb(0.9, 10.0)
    a.inflight = 2

    c2 = config({"a": "m1", "b": "m2", "new": "m1"}, consecutive_failures=2)
    kept, reset = reg.reconcile(c2.upstreams.values())
    assert (kept, reset) == (["a"], ["b", "new"])
    a2 = reg.get(c2.upstreams["a"])
    assert a2 is a
    assert a2.ewma_ttfb_s == 0.7
    assert a2.inflight == 2
    assert a2.ejection.consecutive_failures == 2  # policy follows the new snapshot
    b2 = reg.get(c2.upstreams["b"])
    assert b2 is not b
    assert b2.ewma_ttfb_s is None
    assert b2.fingerprint == c2.upstreams["b"].fingerprint
    new = reg.get(c2.upstreams["new"])
    assert reg.get(c2.upstreams["new"]) is new  # registered, not a detached copy


def test_get_unknown_upstream_is_detached() -> None:
    reg = StatsRegistry()
    c = config({"a": "m1"})
    up = c.upstreams["a"]
    first = reg.get(up)
    first.record_ttfb(1.0, 0.0)
    second = reg.get(up)
    assert second is not first
    assert second.ewma_ttfb_s is None
    assert reg.reconcile([up]) == ([], ["a"])  # it was never registered


def test_get_changed_upstream_before_reconcile_is_detached() -> None:
    reg = StatsRegistry()
    old = config({"a": "m1"})
    reg.reconcile(old.upstreams.values())
    stored = reg.get(old.upstreams["a"])
    stored.record_ttfb(0.5, 0.0)

    changed = config({"a": "m2"}).upstreams["a"]
    detached = reg.get(changed)
    assert detached is not stored
    assert detached.fingerprint == changed.fingerprint
    detached.record_ttfb(9.0, 1.0)
    assert reg.get(old.upstreams["a"]) is stored
    assert stored.ewma_ttfb_s == 0.5


def test_removed_upstream_keeps_its_stats_when_it_comes_back_soon() -> None:
    reg = StatsRegistry()
    both = config({"a": "m1", "b": "m1"})
    reg.reconcile(both.upstreams.values(), now=100.0)
    b = reg.get(both.upstreams["b"])
    b.record_ttfb(0.4, 100.0)

    only_a = config({"a": "m1"})
    reg.reconcile(only_a.upstreams.values(), now=100.5)  # a half-written file, say
    kept, reset = reg.reconcile(both.upstreams.values(), now=101.0)
    assert (kept, reset) == (["a", "b"], [])
    assert reg.get(both.upstreams["b"]) is b
    assert b.ewma_ttfb_s == 0.4


def test_removed_upstream_is_forgotten_after_the_window_or_when_changed() -> None:
    reg = StatsRegistry()
    both = config({"a": "m1", "b": "m1"})
    reg.reconcile(both.upstreams.values(), now=0.0)
    b = reg.get(both.upstreams["b"])
    reg.reconcile(config({"a": "m1"}).upstreams.values(), now=1.0)
    assert reg.reconcile(both.upstreams.values(), now=1.0 + RETIRED_KEEP_S) == (["a"], ["b"])
    assert reg.get(both.upstreams["b"]) is not b

    b = reg.get(both.upstreams["b"])
    reg.reconcile(config({"a": "m1"}).upstreams.values(), now=2000.0)
    changed = config({"a": "m1", "b": "m2"})
    assert reg.reconcile(changed.upstreams.values(), now=2001.0) == (["a"], ["b"])
    assert reg.get(changed.upstreams["b"]) is not b
