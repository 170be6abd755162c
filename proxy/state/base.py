"""The limits-and-budgets state interface: reserve, settle, refund, counters, restore.

Each call is one atomic operation over every scope it names, with the limits passed in (they
come from the current keys file): the in-memory backend does it between two awaits, a Redis
backend as one Lua script (EVALSHA with the scopes as KEYS and limits and amounts as ARGV).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from proxy.governance.reservations import Ask, Counters, Crossing, Hold, Refusal


class LimitState(Protocol):
    async def reserve(self, ask: Ask, now: float) -> Hold | Refusal:
        """Check every claim and, only if all pass, count the request in all of them."""
        ...

    async def settle(self, hold: Hold, tokens: int, usd: float, now: float) -> list[Crossing]:
        """Replace the estimate with the real tokens and cost; soft thresholds crossed now."""
        ...

    async def refund(self, hold: Hold, now: float) -> None:
        """Give back the estimated tokens and cost (the request itself stays counted)."""
        ...

    async def counters(self, scope: str, now: float) -> Counters: ...

    async def restore(self, spent: Mapping[tuple[str, str], float]) -> None:
        """Spending by (scope, period id) from the ledger, at start, so budgets survive restarts."""
        ...
