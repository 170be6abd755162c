"""The simulator's figures and table, from outcomes and access lines (no sockets)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.fake.scenario import Load
from proxy.server.simload import Outcome, plan
from proxy.server.simreport import RunResult, meets_target, percentile, summarize, table


def _ok(i: int, ttfb: float, upstream: str = "a", attempts: int = 1) -> Outcome:
    return Outcome(f"sim-{i}", i % 2 == 0, 200, True, ttfb, attempts, upstream)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1), st.floats(0, 100))
def test_percentile_is_one_of_the_values_and_monotonic(values: list[float], q: float) -> None:
    p = percentile(values, q)
    assert p in values
    assert percentile(values, 0) <= p <= percentile(values, 100)


def test_attempts_and_cost_come_from_the_access_lines() -> None:
    outcomes = [
        _ok(0, 0.010, "a"),
        _ok(1, 0.020, "b", attempts=2),
        Outcome("sim-2", False, 502, False, 0.5, 3, ""),
    ]
    access = [
        {"event": "access", "request_id": "sim-0", "attempts": 1, "cost_usd": 0.001},
        {"event": "access", "request_id": "sim-1", "attempts": 2, "cost_usd": 0.002},
        {"event": "access", "request_id": "sim-2", "attempts": 3},
    ]
    r = summarize("weighted", "incident", outcomes, access)
    assert (r.requests, r.succeeded) == (3, 2)
    assert r.success == pytest.approx(2 / 3)
    assert r.attempts_per_request == pytest.approx(2.0)
    assert r.cost_usd == pytest.approx(0.003)
    assert r.by_upstream == {"a": 1, "b": 1}
    assert r.failures == {"502": 1}
    # TTFB percentiles count only what the client received as a success
    assert (r.p50_ttfb_ms, r.p99_ttfb_ms) == pytest.approx((10.0, 20.0))


def test_a_missing_access_line_falls_back_to_the_response_header() -> None:
    r = summarize("x", "baseline", [_ok(0, 0.01, attempts=2)], [])
    assert r.attempts_per_request == 2.0
    assert r.cost_usd == 0.0


def _result(run: str, success: int, p99: float) -> RunResult:
    failed = {"502 upstream_unavailable": 10_000 - success} if success < 10_000 else {}
    return RunResult("latency", run, 10_000, success, 10.0, p99, 1.0, 0.5, {"a": success}, failed)


def test_the_target_is_success_and_p99_within_twice_the_baseline() -> None:
    base = _result("baseline", 10_000, 50.0)
    assert meets_target(_result("incident", 10_000, 100.0), base)
    assert meets_target(_result("incident", 9_999, 80.0), base)
    assert not meets_target(_result("incident", 9_998, 80.0), base)
    assert not meets_target(_result("incident", 10_000, 101.0), base)


def test_the_table_has_a_block_per_option_set_with_both_rows_and_a_verdict() -> None:
    text = table([_result("baseline", 10_000, 50.0), _result("incident", 9_000, 300.0)])
    lines = text.splitlines()
    assert lines[0] == "option set: latency"
    assert "baseline" in lines[2] and "100.00%" in lines[2]
    assert "incident" in lines[3] and "90.00%" in lines[3]
    assert "failed: 502 upstream_unavailable x1000" in lines[3]
    assert "misses the target" in lines[4]


def test_the_load_plan_is_seeded_spread_and_mixed() -> None:
    load = Load(requests=400, duration_s=10.0, stream_share=0.25)
    first = plan(load, seed=3, scale=0.5)
    assert first == plan(load, seed=3, scale=0.5)
    assert first != plan(load, seed=4, scale=0.5)
    starts = [at for at, _ in first]
    assert starts == sorted(starts)
    assert starts[0] >= 0.0 and starts[-1] <= 5.0  # the duration, scaled
    assert 0.15 < sum(stream for _, stream in first) / 400 < 0.35
