"""UTC calendar periods: day and month ids and resets, across month ends and leap days."""

from __future__ import annotations

import datetime as dt

from proxy.governance.periods import Period, PeriodClock, period_end, period_id, period_start


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, sec: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, sec, tzinfo=dt.UTC).timestamp()


def test_leap_day_is_its_own_day_and_ends_in_march() -> None:
    now = ts(2028, 2, 29, 23, 59, 59)
    assert period_id(Period.DAY, now) == "2028-02-29"
    assert period_id(Period.MONTH, now) == "2028-02"
    assert period_end(Period.DAY, now) == ts(2028, 3, 1)
    assert period_end(Period.MONTH, now) == ts(2028, 3, 1)
    assert period_id(Period.DAY, now + 1) == "2028-03-01"


def test_february_of_a_common_year() -> None:
    now = ts(2027, 2, 28, 12)
    assert period_end(Period.DAY, now) == ts(2027, 3, 1)
    assert period_end(Period.MONTH, now) == ts(2027, 3, 1)


def test_year_end_and_month_start() -> None:
    now = ts(2026, 12, 31, 23, 0)
    assert period_end(Period.MONTH, now) == ts(2027, 1, 1)
    assert period_start(Period.MONTH, now) == ts(2026, 12, 1)
    assert period_start(Period.DAY, now) == ts(2026, 12, 31)
    assert period_id(Period.MONTH, ts(2027, 1, 1)) == "2027-01"


def test_total_never_resets() -> None:
    assert period_id(Period.TOTAL, ts(2026, 1, 1)) == "total"
    assert period_end(Period.TOTAL, ts(2026, 1, 1)) is None


def test_the_period_clock_turns_at_midnight_utc() -> None:
    clock = PeriodClock()
    assert clock.ids(ts(2028, 2, 29, 23, 59, 59)) == ("2028-02-29", "2028-02", "total")
    assert clock.ids(ts(2028, 3, 1)) == ("2028-03-01", "2028-03", "total")
    assert clock.ids(ts(2028, 2, 29, 12)) == (
        "2028-02-29",
        "2028-02",
        "total",
    )  # clock stepped back
