"""Budget periods on the UTC calendar: which day and month a moment is in, and when they reset."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum


class Period(StrEnum):
    DAY = "day"
    MONTH = "month"
    TOTAL = "total"


def period_id(period: Period, now: float) -> str:
    """`2026-02-29`, `2026-02` or `total`: the bucket spending at `now` counts toward."""
    if period is Period.TOTAL:
        return "total"
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    return f"{t:%Y-%m-%d}" if period is Period.DAY else f"{t:%Y-%m}"


def period_end(period: Period, now: float) -> float | None:
    """Epoch seconds when the period of `now` ends (next UTC midnight or month start)."""
    if period is Period.TOTAL:
        return None
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    if period is Period.DAY:
        start = dt.datetime(t.year, t.month, t.day, tzinfo=dt.UTC)
        return (start + dt.timedelta(days=1)).timestamp()
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp()


def period_start(period: Period, now: float) -> float:
    """Epoch seconds when the period of `now` began (0 for the total)."""
    if period is Period.TOTAL:
        return 0.0
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    day = t.day if period is Period.DAY else 1
    return dt.datetime(t.year, t.month, day, tzinfo=dt.UTC).timestamp()


class PeriodClock:
    """The current (day, month, total) ids, recomputed only when a UTC day ends: the budget
    check runs on every request and calendar arithmetic costs microseconds."""

    __slots__ = ("_from", "_ids", "_until")

    def __init__(self) -> None:
        self._ids: tuple[str, str, str] = ("", "", "total")
        self._until = -1.0
        self._from = 0.0

    def ids(self, now: float) -> tuple[str, str, str]:
        if not self._from <= now < self._until:
            self._ids = (period_id(Period.DAY, now), period_id(Period.MONTH, now), "total")
            self._from = period_start(Period.DAY, now)
            self._until = period_end(Period.DAY, now) or 0.0
        return self._ids
