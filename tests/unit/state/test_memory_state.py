"""Reserve, settle and refund in the memory backend, with a fake clock."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.governance.limits import Limits
from proxy.governance.reservations import Ask, Claim, Hold, Refusal
from proxy.state.memory import MemoryState

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC).timestamp()


def ask(tokens: int = 10, usd: float = 1.0, **limits: float) -> Ask:
    return Ask(claims=(Claim("key:k", Limits(**limits)),), tokens=tokens, usd=usd)  # type: ignore[arg-type]


async def test_budget_admits_exactly_what_fits() -> None:
    s = MemoryState()
    holds = [await s.reserve(ask(usd_per_day=10.0), NOW) for _ in range(50)]
    granted = [h for h in holds if isinstance(h, Hold)]
    assert len(granted) == 10
    refused = holds[10]
    assert isinstance(refused, Refusal)
    assert refused.limit == "usd_per_day"
    assert refused.budget
    assert refused.retry_after_s == pytest.approx(12 * 3600)


async def test_settle_corrects_and_refund_gives_back() -> None:
    s = MemoryState()
    h = await s.reserve(ask(tokens=100, usd=2.0, usd_total=10.0), NOW)
    assert isinstance(h, Hold)
    await s.settle(h, 40, 0.5, NOW + 1)
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


async def test_key_and_team_both_must_pass() -> None:
    s = MemoryState()
    team = Claim("team:t", Limits(rpm=2))
    for i in range(2):
        own = Claim(f"key:{i}", Limits(rpm=100))
        assert isinstance(await s.reserve(Ask((own, team), 1, 0.0), NOW), Hold)
    third = await s.reserve(Ask((Claim("key:2", Limits(rpm=100)), team), 1, 0.0), NOW)
    assert isinstance(third, Refusal)
    assert third.scope == "team:t"
    c = await s.counters("key:2", NOW)
    assert c.requests_1m == 0  # refused: nothing counted anywhere


async def test_rpm_tpm_parallel_and_headers() -> None:
    s = MemoryState()
    for _ in range(3):
        assert isinstance(await s.reserve(ask(rpm=3, tpm=1000), NOW), Hold)
    r = await s.reserve(ask(rpm=3, tpm=1000), NOW + 1)
    assert isinstance(r, Refusal)
    assert r.limit == "rpm"
    assert r.retry_after_s is not None and 0 < r.retry_after_s <= 60
    assert {q.kind: q.remaining for q in r.quotas} == {"requests": 0, "tokens": 970}
    too_big = await s.reserve(ask(tokens=2000, tpm=1000), NOW)
    assert isinstance(too_big, Refusal)
    assert too_big.retry_after_s is None
    s2 = MemoryState()
    h = await s2.reserve(ask(max_parallel=1), NOW)
    assert isinstance(await s2.reserve(ask(max_parallel=1), NOW), Refusal)
    assert isinstance(h, Hold)
    await s2.settle(h, 1, 0.0, NOW)
    assert isinstance(await s2.reserve(ask(max_parallel=1), NOW), Hold)


async def test_soft_threshold_once_per_period_and_restore() -> None:
    s = MemoryState()
    await s.restore({("key:k", "2026-12-03"): 7.0})
    h = await s.reserve(ask(usd=1.0, usd_per_day=10.0), NOW)
    assert isinstance(h, Hold)
    crossings = await s.settle(h, 1, 1.5, NOW)
    assert [(c.budget, c.period) for c in crossings] == [("usd_per_day", "2026-12-03")]
    h = await s.reserve(ask(usd=0.1, usd_per_day=10.0), NOW)
    assert isinstance(h, Hold)
    assert await s.settle(h, 1, 0.1, NOW) == []
    tomorrow = NOW + 86400
    r = await s.reserve(ask(usd=1.0, usd_per_day=10.0), tomorrow)
    assert isinstance(r, Hold)  # a new UTC day: a fresh budget


@given(
    st.lists(
        st.tuples(st.sampled_from(["reserve", "settle", "refund"]), st.floats(0.0, 1.0)),
        max_size=60,
    )
)
def test_spending_never_passes_the_budget_when_answers_cost_at_most_their_reservation(
    steps: list[tuple[str, float]],
) -> None:
    import asyncio

    async def play() -> None:
        s = MemoryState()
        team = Claim("team:t", Limits(usd_total=5.0, max_parallel=4))
        own = Claim("key:k", Limits(usd_per_day=3.0))
        holds: list[Hold] = []
        for op, share in steps:
            if op == "reserve":
                got = await s.reserve(Ask((own, team), 10, 1.0), NOW)
                if isinstance(got, Hold):
                    holds.append(got)
            elif holds:
                h = holds.pop(0)
                if op == "settle":
                    await s.settle(h, 5, share * h.ask.usd, NOW)
                else:
                    await s.refund(h, NOW)
            for scope, limit in (("team:t", 5.0), ("key:k", 3.0)):
                c = await s.counters(scope, NOW)
                assert all(0.0 <= v <= limit + 1e-9 for v in c.usd.values())
                assert c.parallel == len(holds)
        for h in holds:
            await s.refund(h, NOW)
        assert (await s.counters("team:t", NOW)).parallel == 0

    asyncio.run(play())
