"""Reservation values: claims, asks, holds, refusals and counters that state backends exchange."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
    ref: str = ""
    """Names the hold in a shared backend (its `max_parallel` lease); empty in memory."""


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
