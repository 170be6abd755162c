"""The Redis limits-and-budgets backend against a real redis-server."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from redis.asyncio import Redis

from proxy.config.statesettings import StateSettings
from proxy.governance.limits import Limits
from proxy.governance.reservations import Ask, Claim, Hold, Refusal
from proxy.state.redis import RedisState, connect

pytest_plugins = ("integration.redis_fixtures",)

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC).timestamp()


def ask(tokens: int = 10, usd: float = 1.0, scope: str = "key:k", **limits: float) -> Ask:
    return Ask(claims=(Claim(scope, Limits(**limits)),), tokens=tokens, usd=usd)  # type: ignore[arg-type]


@pytest.fixture
async def states(redis_base_url: str, redis_prefix: str, redis_client: Redis):  # type: ignore[no-untyped-def]
    """Two backends on one Redis, as two gateway processes would have."""
    settings = StateSettings(backend="redis", url=redis_base_url)
    clients = [connect(settings), connect(settings)]
    yield [RedisState(c, redis_prefix) for c in clients]
    for c in clients:
        await c.aclose()


async def test_concurrent_reservations_from_two_clients_admit_exactly_the_budget(states) -> None:  # type: ignore[no-untyped-def]
    a, b = states
    got = await asyncio.gather(
        *(s.reserve(ask(usd_per_day=10.0), NOW) for _ in range(25) for s in (a, b))
    )
    assert sum(isinstance(h, Hold) for h in got) == 10
    refused = next(h for h in got if isinstance(h, Refusal))
    assert refused.limit == "usd_per_day"
    assert refused.budget
    assert refused.retry_after_s == pytest.approx(12 * 3600)
    c = await a.counters("key:k", NOW)
    assert c.usd["total"] == pytest.approx(10.0)
    assert c.parallel == 10


async def test_settle_corrects_and_refund_gives_back(states) -> None:  # type: ignore[no-untyped-def]
    s, other = states
    h = await s.reserve(ask(tokens=100, usd=2.0, usd_total=10.0), NOW)
    assert isinstance(h, Hold)
    assert await other.settle(h, 40, 0.5, NOW + 1) == []
    c = await s.counters("key:k", NOW + 1)
    assert c.usd["total"] == pytest.approx(0.5)
    assert c.tokens_1m == pytest.approx(40)
    assert c.parallel == 0
    h2 = await s.reserve(ask(tokens=100, usd=2.0, usd_total=10.0), NOW + 2)
    assert isinstance(h2, Hold)
    await s.refund(h2, NOW + 3)
    c = await s.counters("key:k", NOW + 3)
    assert c.usd["total"] == pytest.approx(0.5)
    assert c.requests_1m == 2  # a refunded request still counts toward rpm
    assert c.parallel == 0


async def test_rpm_is_a_sliding_window_without_a_double_burst(states) -> None:  # type: ignore[no-untyped-def]
    a, b = states
    end_of_minute = NOW + 59.0
    got = [await (a if i % 2 else b).reserve(ask(rpm=10), end_of_minute) for i in range(12)]
    assert sum(isinstance(h, Hold) for h in got) == 10
    refused = got[-1]
    assert isinstance(refused, Refusal)
    assert refused.limit == "rpm"
    assert refused.retry_after_s is not None
    assert 0 < refused.retry_after_s <= 60
    assert refused.quotas[0].kind == "requests"
    assert refused.quotas[0].remaining == 0
    # Two seconds later, in a new minute: the previous minute still weighs ~ 57/60 of 10.
    later = [await a.reserve(ask(rpm=10), NOW + 61.0) for _ in range(5)]
    assert sum(isinstance(h, Hold) for h in later) == 0
    # Most of the way through the next minute, room comes back gradually.
    late = [await a.reserve(ask(rpm=10), NOW + 60 + 45) for _ in range(10)]
    assert 1 <= sum(isinstance(h, Hold) for h in late) <= 8


async def test_max_parallel_counts_holds_until_they_end(states) -> None:  # type: ignore[no-untyped-def]
    a, b = states
    h1 = await a.reserve(ask(max_parallel=2), NOW)
    h2 = await b.reserve(ask(max_parallel=2), NOW)
    assert isinstance(h1, Hold)
    assert isinstance(h2, Hold)
    third = await a.reserve(ask(max_parallel=2), NOW)
    assert isinstance(third, Refusal)
    assert third.limit == "max_parallel"
    await b.settle(h1, 5, 0.0, NOW + 1)
    assert isinstance(await a.reserve(ask(max_parallel=2), NOW + 1), Hold)


async def test_a_dead_process_leaks_no_parallel_slot_past_the_lease(states) -> None:  # type: ignore[no-untyped-def]
    a, _ = states
    assert isinstance(await a.reserve(ask(max_parallel=1), NOW), Hold)  # never settled
    assert isinstance(await a.reserve(ask(max_parallel=1), NOW + 10), Refusal)
    assert isinstance(await a.reserve(ask(max_parallel=1), NOW + a.lease_s + 1), Hold)


async def test_team_refusal_names_the_team_and_counts_nothing(states) -> None:  # type: ignore[no-untyped-def]
    a, _ = states
    team = Claim("team:t", Limits(rpm=1))
    first = Ask((Claim("key:x", Limits(rpm=100)), team), 1, 0.0)
    assert isinstance(await a.reserve(first, NOW), Hold)
    second = await a.reserve(Ask((Claim("key:y", Limits(rpm=100)), team), 1, 0.0), NOW)
    assert isinstance(second, Refusal)
    assert second.scope == "team:t"
    assert (await a.counters("key:y", NOW)).requests_1m == 0


async def test_tpm_larger_than_the_limit_never_heals(states) -> None:  # type: ignore[no-untyped-def]
    a, _ = states
    got = await a.reserve(ask(tokens=500, tpm=100), NOW)
    assert isinstance(got, Refusal)
    assert got.limit == "tpm"
    assert got.retry_after_s is None


async def test_soft_threshold_is_reported_once_per_period(states) -> None:  # type: ignore[no-untyped-def]
    a, b = states
    crossings = []
    for s in (a, b, a):
        h = await s.reserve(ask(usd=1.0, usd_per_day=10.0, soft_pct=20.0), NOW)
        assert isinstance(h, Hold)
        crossings += await s.settle(h, 10, 1.5, NOW)
    assert len(crossings) == 1
    assert crossings[0].budget == "usd_per_day"
    assert crossings[0].spent_usd == pytest.approx(3.0)


async def test_restore_keeps_what_redis_already_has(states) -> None:  # type: ignore[no-untyped-def]
    a, b = states
    await a.restore({("key:k", "total"): 3.0})
    await b.restore({("key:k", "total"): 1.0, ("key:z", "total"): 2.0})
    assert (await a.counters("key:k", NOW)).usd["total"] == pytest.approx(3.0)
    assert (await a.counters("key:z", NOW)).usd["total"] == pytest.approx(2.0)


async def test_stale_periods_are_swept_when_the_day_changes(states) -> None:  # type: ignore[no-untyped-def]
    a, _ = states
    assert isinstance(await a.reserve(ask(usd=1.0, usd_per_day=5.0), NOW), Hold)
    tomorrow = NOW + 86400
    assert isinstance(await a.reserve(ask(usd=1.0, usd_per_day=5.0), tomorrow), Hold)
    usd = (await a.counters("key:k", tomorrow)).usd
    assert "2026-12-03" not in usd
    assert usd["2026-12-04"] == pytest.approx(1.0)
    assert usd["total"] == pytest.approx(2.0)
