"""The limits-and-budgets state interface: reserve, settle, refund, counters, restore.

Each call is one atomic operation over every scope it names, with the limits passed in (they
come from the current keys file): the in-memory backend does it between two awaits, a Redis
backend as one Lua script (EVALSHA with the scopes as KEYS and limits and amounts as ARGV).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from proxy.governance.limits import Limits


@dataclass(frozen=True, slots=True)
class Claim:
    """One scope a request counts against (`key:NAME`, `team:NAME`) and its limits."""

    scope: str
    limits: Limits


@dataclass(frozen=True, slots=True)
class Ask:
    """What admission wants to reserve: one request, estimated tokens and USD, in every scope."""

    claims: tuple[Claim, ...]
    tokens: int
    usd: float


@dataclass(frozen=True, slots=True)
class Hold:
    """A granted reservation, with the buckets it went into so settle corrects those."""

    ask: Ask
    minute: int
    periods: tuple[str, ...]
    """The day and month ids current at reservation (plus `total`)."""


@dataclass(frozen=True, slots=True)
class Quota:
    """One limit as OpenAI's `x-ratelimit-*` headers describe it."""

    kind: str
    """`requests` or `tokens`."""
    limit: int
    remaining: int
    reset_s: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a reservation was refused, for a 429 the SDKs act on."""

    scope: str
    limit: str
    """`rpm`, `tpm`, `max_parallel`, `usd_per_day`, `usd_per_month` or `usd_total`."""
    retry_after_s: float | None
    """None: it will not heal by waiting (a total budget)."""
    quotas: tuple[Quota, ...]

    @property
    def budget(self) -> bool:
        return self.limit.startswith("usd_")


@dataclass(frozen=True, slots=True)
class Crossing:
    """A scope's spending passed its soft threshold for a period (reported once per period)."""

    scope: str
    budget: str
    period: str
    spent_usd: float
    limit_usd: float


@dataclass(frozen=True, slots=True)
class Counters:
    """What a scope has used: requests and tokens in the last minute, in flight, USD by period."""

    requests_1m: float
    tokens_1m: float
    parallel: int
    usd: Mapping[str, float]


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
