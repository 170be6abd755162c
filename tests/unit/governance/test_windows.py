"""Sliding-window counters with a fake clock."""

from __future__ import annotations

import pytest

from proxy.governance.windows import SlidingWindow

T0 = 1_000_020.0 - (1_000_020.0 % 60)  # the start of a minute


def test_counts_within_the_minute() -> None:
    w = SlidingWindow()
    for i in range(5):
        assert w.fits(1, 5, T0 + i)
        w.add(1, T0 + i)
    assert not w.fits(1, 5, T0 + 10)
    assert w.used(T0 + 10) == 5


def test_previous_minute_decays_linearly() -> None:
    w = SlidingWindow()
    w.add(10, T0 + 30)
    assert w.used(T0 + 60) == pytest.approx(10)
    assert w.used(T0 + 90) == pytest.approx(5)
    assert w.used(T0 + 119) == pytest.approx(10 / 60)
    assert w.used(T0 + 120) == 0


def test_no_double_burst_at_the_boundary() -> None:
    w = SlidingWindow()
    w.add(10, T0 + 59)
    assert not w.fits(1, 10, T0 + 60.5)


def test_retry_after_is_when_it_fits() -> None:
    w = SlidingWindow()
    w.add(10, T0 + 10)
    wait = w.retry_after(1, 10, T0 + 60)
    assert w.fits(1, 10, T0 + 60 + wait + 0.01)
    assert not w.fits(1, 10, T0 + 60 + wait - 0.5)


def test_correction_goes_to_the_reserved_minute() -> None:
    w = SlidingWindow()
    w.add(100, T0 + 50)
    w.add(-60, T0 + 70, minute=int(T0 // 60))
    assert w.previous == 40
    assert w.current == 0
    w.add(-1000, T0 + 200, minute=int(T0 // 60))  # forgotten bucket: ignored
    assert w.used(T0 + 200) == 0
