"""The fake provider's incident timeline: which behaviour answers when."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.fake.behaviour import Behaviour
from proxy.fake.timeline import Phase, Timeline

BASE = Behaviour(ttft_s=0.01)
DOWN = Behaviour(status=503)
SLOW = Behaviour(ttft_s=0.1)


def test_phases_replace_the_default_only_inside_their_window() -> None:
    t = Timeline(BASE, (Phase(1.0, 2.0, DOWN), Phase(3.0, math.inf, SLOW)))
    rng = random.Random(0)
    assert t.at(0.0, rng) is BASE
    assert t.at(1.0, rng) is DOWN
    assert t.at(1.999, rng) is DOWN
    assert t.at(2.0, rng) is BASE  # the end is exclusive: recovery
    assert t.at(10.0, rng) is SLOW
    assert t.end_s == math.inf


def test_the_first_matching_phase_wins() -> None:
    t = Timeline(BASE, (Phase(0.0, 5.0, DOWN), Phase(1.0, 2.0, SLOW)))
    assert t.at(1.5, random.Random(0)) is DOWN


def test_a_rate_answers_that_share_of_requests_from_a_seeded_rng() -> None:
    t = Timeline(BASE, (Phase(0.0, 10.0, DOWN, rate=0.3),))
    draws = [t.at(1.0, rng) for rng in [random.Random(7)] for _ in range(2000)]
    share = sum(b is DOWN for b in draws) / len(draws)
    assert 0.25 < share < 0.35
    again = [t.at(1.0, rng) for rng in [random.Random(7)] for _ in range(2000)]
    assert [b is DOWN for b in draws] == [b is DOWN for b in again]


def test_refused_phases_are_windows_not_behaviours() -> None:
    t = Timeline(BASE, (Phase(4.0, 6.0, BASE, refuse=True), Phase(1.0, 2.0, DOWN)))
    assert t.refusals() == ((4.0, 6.0),)
    assert t.at(5.0, random.Random(0)) is BASE


@pytest.mark.parametrize(
    ("start", "end", "rate"), [(-1.0, 2.0, 1.0), (2.0, 2.0, 1.0), (0.0, 1.0, 1.5)]
)
def test_invalid_phases_are_refused(start: float, end: float, rate: float) -> None:
    with pytest.raises(ValueError, match="phase"):
        Phase(start, end, DOWN, rate=rate)


@given(st.floats(min_value=0, max_value=100), st.floats(min_value=0.001, max_value=50))
def test_outside_every_phase_the_default_answers(at: float, length: float) -> None:
    t = Timeline(BASE, (Phase(200.0, 200.0 + length, DOWN),))
    assert t.at(at, random.Random(0)) is BASE
