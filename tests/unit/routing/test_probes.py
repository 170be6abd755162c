"""Tests for active health-check decisions with a fake clock: schedule, eject, early recovery."""

from __future__ import annotations

import random
from typing import Any

import pytest

from proxy.config.compiler import compile_data
from proxy.config.healthcheck import HealthCheck
from proxy.config.values import ConfigError, Ejection, Upstream
from proxy.providers.probe import probe_target
from proxy.routing.probes import ProbeState
from proxy.routing.stats import Transition, UpstreamStats

CHECK = HealthCheck(every_s=10.0, jitter=0.2, failures=2, path="/models")


def fresh(now: float = 100.0) -> tuple[ProbeState, UpstreamStats, random.Random]:
    rng = random.Random(3)
    st = UpstreamStats("a", "fp", Ejection(consecutive_failures=3, base_s=30, max_s=300))
    return ProbeState("fp", CHECK, now, rng), st, rng


def test_first_probe_within_one_interval_then_jittered_intervals() -> None:
    rng = random.Random(1)
    firsts = [ProbeState("fp", CHECK, 100.0, rng).next_at for _ in range(200)]
    assert all(100.0 <= t <= 110.0 for t in firsts)
    assert max(firsts) - min(firsts) > 5  # spread, not a burst
    ps = ProbeState("fp", CHECK, 0.0, rng)
    gaps = []
    for now in (50.0, 60.0, 70.0):
        assert ps.due(ps.next_at)
        ps.plan(now, rng)
        assert not ps.due(now + 7.9)
        gaps.append(ps.next_at - now)
    assert all(8.0 <= g <= 12.0 for g in gaps)
    assert len(set(gaps)) == 3


def test_failures_in_a_row_eject_and_a_success_ends_it_early() -> None:
    ps, st, rng = fresh()
    now = 100.0
    assert ps.record(False, st, now, rng) is Transition.NONE
    assert st.available(now)
    assert ps.record(False, st, now + 10, rng) is Transition.EJECTED
    assert not st.available(now + 11)
    assert st.ejected_until >= now + 10 + 30
    assert ps.record(False, st, now + 20, rng) is Transition.NONE  # already out: not longer
    assert ps.record(True, st, now + 30, rng) is Transition.RECOVERED
    assert st.available(now + 30) and st.ejected_until == 0.0
    assert ps.failures == 0


def test_a_success_in_between_resets_the_streak() -> None:
    ps, st, rng = fresh()
    ps.record(False, st, 100, rng)
    ps.record(True, st, 110, rng)
    assert ps.record(False, st, 120, rng) is Transition.NONE
    assert st.available(121)


def test_success_ends_a_passive_ejection_but_not_a_429_pause_nor_a_drain() -> None:
    ps, st, rng = fresh()
    st.eject(100.0, rng)
    assert ps.record(True, st, 101.0, rng) is Transition.RECOVERED
    st.record_rate_limit(102.0, 20.0)
    ps.record(True, st, 103.0, rng)
    assert not st.available(104.0)
    st.drained = True
    ps.record(True, st, 200.0, rng)
    assert not st.available(200.0)


def test_passive_streak_untouched_by_probes() -> None:
    ps, st, rng = fresh()
    st.failures = 2
    ps.record(False, st, 100, rng)
    assert st.failures == 2


def up_of(provider: str, **extra: Any) -> Upstream:
    raw: dict[str, Any] = {"provider": provider, "credential": "env:K", "health": {}, **extra}
    if provider == "openai":
        raw["base_url"] = "http://127.0.0.1:9/v1"
    cfg = compile_data(
        {"upstreams": {"u": raw}, "routes": {"r": {"tiers": [{"u": 1}]}}}, {"K": "s"}
    )
    return cfg.upstreams["u"]


def test_each_provider_probes_its_model_list_with_its_own_auth() -> None:
    up = up_of("openai")
    assert up.health is not None and up.health.every_s == 15.0
    assert probe_target(up, up.health.path) == (
        "http://127.0.0.1:9/v1/models",
        {"accept": "application/json", "Authorization": "Bearer s"},
    )
    up = up_of("anthropic")
    url, headers = probe_target(up, up.health.path if up.health else "")
    assert url == "https://api.anthropic.com/v1/models"
    assert headers["x-api-key"] == "s" and "anthropic-version" in headers
    up = up_of("gemini")
    url, headers = probe_target(up, up.health.path if up.health else "")
    assert url.endswith("/v1beta/models") and headers["x-goog-api-key"] == "s"
    up = up_of("azure", base_url="https://x.openai.azure.com", deployment="d", api_version="v1")
    url, headers = probe_target(up, up.health.path if up.health else "")
    assert url == "https://x.openai.azure.com/openai/models?api-version=v1"
    assert headers["api-key"] == "s"


@pytest.mark.parametrize(
    ("health", "provider", "message"),
    [
        ({}, "bedrock", 'provider "bedrock" has no free GET to probe'),
        ({"every_s": 0}, "openai", "upstreams.u.health.every_s: must be a number >= 1"),
        ({"path": "models"}, "openai", 'upstreams.u.health.path: must start with "/"'),
        ({"jitter": 2}, "openai", "upstreams.u.health.jitter: must be a number from 0 to 1"),
        ({"evry_s": 1}, "openai", "upstreams.u.health.evry_s: unknown setting"),
        (5, "openai", "upstreams.u.health: must be a table"),
    ],
)
def test_health_config_errors(health: Any, provider: str, message: str) -> None:
    raw: dict[str, Any] = {"provider": provider, "health": health, "model": "m"}
    if provider == "openai":
        raw["base_url"] = "http://127.0.0.1:9/v1"
    else:
        raw.update(region="us-east-1", credential="env:K", access_key_id="env:K")
    data = {"upstreams": {"u": raw}, "routes": {"r": {"tiers": [{"u": 1}]}}}
    with pytest.raises(ConfigError) as err:
        compile_data(data, {"K": "s"})
    assert any(message in e for e in err.value.errors), err.value.errors
