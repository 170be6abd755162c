"""Per-minute limits as sliding-window counters: two fixed buckets, the older one weighted."""

from __future__ import annotations

import math

WINDOW_S = 60.0


class SlidingWindow:
    """Counts within the last minute, approximated from this minute's and last minute's buckets.

    The estimate is `previous x (1 - elapsed share of this minute) + current` (the sliding
    window counter): two numbers per scope and limit, which a Redis script keeps atomically
    just as well, and no burst of twice the limit at a minute boundary as fixed windows allow.
    """

    __slots__ = ("current", "minute", "previous")

    def __init__(self) -> None:
        self.minute = 0
        self.current = 0.0
        self.previous = 0.0

    def _roll(self, now: float) -> None:
        minute = int(now // WINDOW_S)
        if minute == self.minute:
            return
        self.previous = self.current if minute == self.minute + 1 else 0.0
        self.current = 0.0
        self.minute = minute

    def used(self, now: float) -> float:
        self._roll(now)
        elapsed = (now % WINDOW_S) / WINDOW_S
        return self.previous * (1.0 - elapsed) + self.current

    def fits(self, amount: float, limit: float, now: float) -> bool:
        return self.used(now) + amount <= limit

    def add(self, amount: float, now: float, minute: int | None = None) -> None:
        """Count `amount` now, or correct the bucket of `minute` if it is still tracked."""
        self._roll(now)
        if minute is None or minute == self.minute:
            self.current = max(0.0, self.current + amount)
        elif minute == self.minute - 1:
            self.previous = max(0.0, self.previous + amount)

    def retry_after(self, amount: float, limit: float, now: float) -> float:
        """Seconds until `amount` fits, as the previous bucket's weight decays (>= 0.001)."""
        self._roll(now)
        room = limit - self.current - amount
        into = now % WINDOW_S
        if room < 0:
            # Not even an empty previous minute makes room: wait for the next minute.
            return max(0.001, WINDOW_S - into)
        if self.previous <= 0:
            return 0.001
        # previous x (1 - t/60) <= room  =>  t >= 60 x (1 - room / previous)
        t = WINDOW_S * (1.0 - room / self.previous)
        return max(0.001, t - into)

    def reset_in(self, now: float) -> float:
        """Seconds until the window is empty of everything counted so far."""
        return WINDOW_S - (now % WINDOW_S) + (WINDOW_S if self.current else 0.0)


def minute_of(now: float) -> int:
    return int(now // WINDOW_S)


def ceil_s(seconds: float) -> int:
    return max(1, math.ceil(seconds))
