"""Event-loop lag: how late a periodic timer fires, the sign of blocking work on the loop."""

from __future__ import annotations

import asyncio
import time

INTERVAL_S = 0.5


class LoopLag:
    """The last measured lag, kept by `run` (a named background task) for the scrape."""

    __slots__ = ("lag_s",)

    def __init__(self) -> None:
        self.lag_s = 0.0

    async def run(self, interval_s: float = INTERVAL_S) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(interval_s)
            self.lag_s = max(0.0, time.monotonic() - start - interval_s)
