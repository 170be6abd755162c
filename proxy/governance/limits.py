"""Key and team values from keys.toml: limits, budgets, allowed routes, expiry, the hash table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from proxy.config.schema import custom, setting


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """What one key or team may use; None means no limit of that kind."""

    rpm: int | None = setting(None, lo=1)
    """Requests per minute (sliding window)."""
    tpm: int | None = setting(None, lo=1)
    """Tokens per minute: prompt estimate + max_tokens at admission, corrected with real usage."""
    max_parallel: int | None = setting(None, lo=1)
    usd_per_day: float | None = setting(None)
    """Spend per UTC calendar day."""
    usd_per_month: float | None = setting(None)
    """Spend per UTC calendar month."""
    usd_total: float | None = setting(None)
    soft_pct: float = setting(80.0, lo=1)
    """Share of a budget at which a warning is logged (and the webhook called) once per period."""

    @property
    def any(self) -> bool:
        return any(
            v is not None
            for v in (
                self.rpm,
                self.tpm,
                self.max_parallel,
                self.usd_per_day,
                self.usd_per_month,
                self.usd_total,
            )
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Team:
    """`[teams.NAME]`: limits every key of the team shares."""

    name: str
    limits: Limits


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    """`[keys.NAME]`: one virtual key, known by the salted hash of its secret only."""

    name: str
    hash: str = custom()
    team: str | None = setting(None)
    routes: frozenset[str] | None = custom(None)
    """Routes the key may call; None: every route."""
    expires: dt.date | None = custom(None)
    """The last day (UTC) the key works."""
    disabled: bool = setting(False)
    limits: Limits

    def usable(self, now: float) -> bool:
        """Enabled and not expired at `now` (epoch seconds; the expiry day is the last good one)."""
        if self.disabled:
            return False
        if self.expires is None:
            return True
        return dt.datetime.fromtimestamp(now, dt.UTC).date() <= self.expires


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyTable:
    """The compiled keys file: keys by hash (O(1) lookup), teams by name."""

    salt: bytes
    by_hash: Mapping[str, Key] = field(default_factory=lambda: MappingProxyType({}))
    teams: Mapping[str, Team] = field(default_factory=lambda: MappingProxyType({}))
