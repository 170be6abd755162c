"""Tests for proxy.routing.selector: smooth weighted round robin, round robin, least busy, latency P2C."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.config.compiler import compile_data
from proxy.config.values import Ejection, Strategy, Tier
from proxy.routing.selector import TierState, pick, signature
from proxy.routing.stats import UpstreamStats

NOW = 1000.0


def tier_of(weights: dict[str, int], strategy: Strategy = Strategy.WEIGHTED) -> Tier:
    upstreams = {
        name: {"base_url": f"http://127.0.0.1:{9000 + i}/v1"} for i, name in enumerate(weights)
    }
    data: dict[str, Any] = {
        "upstreams": upstreams,
        "routes": {"r": {"strategy": strategy.value, "tiers": [weights]}},
    }
    return compile_data(data, {}).routes["r"].tiers[0]


def fresh_stats(n: int) -> list[UpstreamStats]:
    return [UpstreamStats(f"u{i}", f"fp{i}", Ejection()) for i in range(n)]


def run(
    strategy: Strategy,
    weights: list[int],
    rounds: int,
    *,
    candidates: list[int] | None = None,
    stats: list[UpstreamStats] | None = None,
    seed: int = 1,
) -> list[int]:
    cands = list(range(len(weights))) if candidates is None else candidates
    sts = fresh_stats(len(weights)) if stats is None else stats
    state = TierState(tuple((f"u{i}", w) for i, w in enumerate(weights)))
    rng = random.Random(seed)
    return [pick(strategy, cands, weights, sts, state, rng, NOW) for _ in range(rounds)]


# --- smooth weighted round robin ---------------------------------------------------------------


def test_weighted_3_1_pattern() -> None:
    assert run(Strategy.WEIGHTED, [3, 1], 8) == [0, 0, 1, 0, 0, 0, 1, 0]


def test_weighted_nginx_5_1_1_order() -> None:
    # The example of nginx's upstream smooth weighted round robin: a a b a c a a.
    assert run(Strategy.WEIGHTED, [5, 1, 1], 7) == [0, 0, 1, 0, 2, 0, 0]
    assert run(Strategy.WEIGHTED, [5, 1, 1], 14)[7:] == [0, 0, 1, 0, 2, 0, 0]


def test_weighted_is_deterministic_whatever_the_rng() -> None:
    a = run(Strategy.WEIGHTED, [4, 2, 1], 50, seed=1)
    b = run(Strategy.WEIGHTED, [4, 2, 1], 50, seed=99)
    assert a == b


def test_weighted_equal_weights_alternate() -> None:
    assert run(Strategy.WEIGHTED, [1, 1, 1], 6) == [0, 1, 2, 0, 1, 2]


def test_weighted_exact_proportions_over_cycle() -> None:
    picks = run(Strategy.WEIGHTED, [7, 2, 0, 1], 10 * 3)
    assert Counter(picks) == {0: 21, 1: 6, 3: 3}


def test_weighted_candidate_subset_only() -> None:
    picks = run(Strategy.WEIGHTED, [5, 3, 2], 10, candidates=[1, 2])
    assert Counter(picks) == {1: 6, 2: 4}


def test_weighted_via_compiled_tier_signature() -> None:
    tier = tier_of({"a": 3, "b": 1})
    assert signature(tier) == (("a", 3), ("b", 1))
    state = TierState(signature(tier))
    weights = [m.weight for m in tier.members]
    rng = random.Random(0)
    picks = [
        tier.members[pick(tier.strategy, [0, 1], weights, fresh_stats(2), state, rng, NOW)]
        for _ in range(4)
    ]
    assert [m.upstream.name for m in picks] == ["a", "a", "b", "a"]


# --- round robin ---------------------------------------------------------------------------------


def test_round_robin_cycles_through_every_candidate() -> None:
    picks = run(Strategy.ROUND_ROBIN, [1, 1, 1], 9)
    assert sorted(picks[:3]) == [0, 1, 2]
    assert picks[3:6] == picks[:3]
    assert picks[6:9] == picks[:3]


def test_round_robin_ignores_weights() -> None:
    picks = run(Strategy.ROUND_ROBIN, [10, 1], 10)
    assert Counter(picks) == {0: 5, 1: 5}
    assert all(a != b for a, b in itertools.pairwise(picks))


def test_round_robin_over_subset() -> None:
    picks = run(Strategy.ROUND_ROBIN, [1, 1, 1, 1], 6, candidates=[0, 3])
    assert Counter(picks) == {0: 3, 3: 3}


def test_single_candidate_is_returned_without_touching_state() -> None:
    state = TierState((("a", 1), ("b", 1)))
    rng = random.Random(0)
    for strategy in Strategy:
        assert pick(strategy, [1], [1, 1], fresh_stats(2), state, rng, NOW) == 1
    assert state.cursor == 0
    assert state.current == [0, 0]


# --- least busy ----------------------------------------------------------------------------------


def test_least_busy_picks_min_inflight() -> None:
    stats = fresh_stats(3)
    stats[0].inflight = 4
    stats[1].inflight = 1
    stats[2].inflight = 2
    assert set(run(Strategy.LEAST_BUSY, [1, 1, 1], 50, stats=stats)) == {1}


def test_least_busy_ignores_non_candidates() -> None:
    stats = fresh_stats(3)
    stats[0].inflight = 0
    stats[1].inflight = 3
    stats[2].inflight = 2
    assert set(run(Strategy.LEAST_BUSY, [1, 1, 1], 50, candidates=[1, 2], stats=stats)) == {2}


def test_least_busy_tie_broken_by_weight() -> None:
    stats = fresh_stats(3)
    stats[2].inflight = 1
    picks = run(Strategy.LEAST_BUSY, [3, 1, 100], 4000, stats=stats, seed=5)
    counts = Counter(picks)
    assert 2 not in counts
    assert 0.70 < counts[0] / 4000 < 0.80


def test_least_busy_tie_zero_weight_never_chosen() -> None:
    picks = run(Strategy.LEAST_BUSY, [0, 5], 200)
    assert set(picks) == {1}


# --- latency (power of two choices) --------------------------------------------------------------


def measured(ttfbs: list[float]) -> list[UpstreamStats]:
    stats = fresh_stats(len(ttfbs))
    for st_, t in zip(stats, ttfbs, strict=True):
        st_.record_ttfb(t, NOW)
    return stats


def test_latency_two_candidates_always_the_faster() -> None:
    picks = run(Strategy.LATENCY, [1, 1], 1000, stats=measured([1.0, 0.05]), seed=3)
    assert Counter(picks) == {1: 1000}


def test_latency_prefers_fast_upstream_over_many_draws() -> None:
    stats = measured([0.05, 0.8, 1.0, 1.2])
    picks = run(Strategy.LATENCY, [1, 1, 1, 1], 1000, stats=stats, seed=11)
    counts = Counter(picks)
    # P2C: the fast one wins every pair it is drawn into (1/2 of pairs), and the slowest none.
    assert counts[0] > 400
    assert counts[0] == max(counts.values())
    assert 3 not in counts


def test_latency_fast_upstream_gets_most_traffic_with_weights() -> None:
    stats = measured([0.05, 1.0, 1.0])
    picks = run(Strategy.LATENCY, [2, 1, 1], 1000, stats=stats, seed=42)
    assert Counter(picks)[0] > 800


def test_latency_is_seeded() -> None:
    stats = measured([0.1, 0.2, 0.3, 0.4])
    a = run(Strategy.LATENCY, [1, 1, 1, 1], 200, stats=stats, seed=7)
    b = run(Strategy.LATENCY, [1, 1, 1, 1], 200, stats=stats, seed=7)
    assert a == b


def test_latency_never_picks_a_non_candidate() -> None:
    stats = measured([0.001, 1.0, 2.0, 3.0])  # index 0 is the fastest but not a candidate
    picks = run(Strategy.LATENCY, [100, 1, 1, 1], 1000, candidates=[1, 2, 3], stats=stats)
    assert 0 not in picks
    assert set(picks) <= {1, 2}


def test_latency_counts_inflight_as_load() -> None:
    stats = measured([0.1, 0.3])
    stats[0].inflight = 5  # 0.101 * 6 > 0.301 * 1
    picks = run(Strategy.LATENCY, [1, 1], 100, stats=stats)
    assert set(picks) == {1}


def test_latency_unmeasured_is_optimistic() -> None:
    stats = measured([0.2, 0.2])
    stats.append(UpstreamStats("new", "fp-new", Ejection()))
    picks = run(Strategy.LATENCY, [1, 1, 1], 600, stats=stats, seed=2)
    assert Counter(picks)[2] > 300  # chosen in every pair it is drawn into (2/3)


def test_latency_equal_scores_split_randomly() -> None:
    picks = run(Strategy.LATENCY, [1, 1], 2000, stats=measured([0.5, 0.5]), seed=4)
    assert 0.45 < Counter(picks)[0] / 2000 < 0.55


# --- properties ---------------------------------------------------------------------------------


@st.composite
def tier_setups(draw: st.DrawFn) -> tuple[list[int], list[int], list[UpstreamStats]]:
    n = draw(st.integers(min_value=1, max_value=6))
    weights = draw(st.lists(st.integers(min_value=0, max_value=20), min_size=n, max_size=n))
    candidates = sorted(draw(st.sets(st.integers(0, n - 1), min_size=1)))
    stats = fresh_stats(n)
    for st_ in stats:
        st_.inflight = draw(st.integers(min_value=0, max_value=5))
        ttfb = draw(st.none() | st.floats(min_value=0.0, max_value=30.0))
        if ttfb is not None:
            st_.record_ttfb(ttfb, NOW - draw(st.floats(min_value=0.0, max_value=120.0)))
    return weights, candidates, stats


@settings(max_examples=150)
@given(tier_setups(), st.sampled_from(list(Strategy)), st.integers(0, 2**32))
def test_pick_always_returns_a_candidate(
    setup: tuple[list[int], list[int], list[UpstreamStats]], strategy: Strategy, seed: int
) -> None:
    weights, candidates, stats = setup
    picks = run(strategy, weights, 30, candidates=candidates, stats=stats, seed=seed)
    assert set(picks) <= set(candidates)


@settings(max_examples=150)
@given(
    st.lists(st.integers(min_value=0, max_value=15), min_size=1, max_size=7),
    st.integers(min_value=1, max_value=3),
)
def test_weighted_rounds_match_weights_exactly(weights: list[int], cycles: int) -> None:
    total = sum(weights)
    if total == 0:
        return
    picks = run(Strategy.WEIGHTED, weights, total * cycles)
    counts = Counter(picks)
    assert [counts[i] for i in range(len(weights))] == [w * cycles for w in weights]
    # Each cycle repeats the first: the rotation state returns to zero after `total` picks.
    assert picks == picks[:total] * cycles


@pytest.mark.parametrize("strategy", list(Strategy))
def test_pick_does_not_mutate_stats(strategy: Strategy) -> None:
    stats = measured([0.1, 0.2, 0.3])
    before = [(s.inflight, s.ewma_ttfb_s, s.failures) for s in stats]
    run(strategy, [1, 2, 3], 20, stats=stats)
    assert [(s.inflight, s.ewma_ttfb_s, s.failures) for s in stats] == before
