"""`[cache]` defaults and a route's `cache = {...}` opt-in to the response cache."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.config.reader import Reader, keys_of
from proxy.config.schema import setting

SCOPES = ("key", "team", "global")


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSettings:
    """[cache]: defaults of every route's cache, and where entries live (restart to change)."""

    ttl_s: float = setting(300.0, lo=0.001)
    """How long an answer is served again."""
    max_entry_bytes: int = setting(1 << 20, "max_entry_kb", lo=0.001, unit=1024)
    """A larger answer is passed on but not kept."""
    max_total_bytes: int = setting(256 << 20, "max_total_mb", lo=0.001, unit=2**20)
    """The memory store's cap, least recently used out first (Redis: its own maxmemory)."""
    scope: str = setting("team", choices=SCOPES)
    """Who shares an entry: `team` (the key's team, else the key alone), `key`, or `global`
    (every caller of the route; only for answers that are not private)."""
    store: str = setting("auto", choices=("auto", "memory", "redis"))
    """`auto`: Redis when [state] backend = "redis", else this process's memory."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteCache:
    """A route's cache, compiled with [cache]'s defaults under what the route sets."""

    ttl_s: float = setting(300.0, lo=0.001)
    max_entry_bytes: int = setting(1 << 20, "max_entry_kb", lo=0.001, unit=1024)
    scope: str = setting("team", choices=SCOPES)


CACHE_KEYS = keys_of(CacheSettings)
ROUTE_CACHE_KEYS = keys_of(RouteCache)


def read_settings(c: Reader, raw: Mapping[str, object]) -> CacheSettings:
    c.known(raw, CACHE_KEYS, "cache")
    return c.read(CacheSettings, raw, "cache")


def read_route_cache(c: Reader, raw: object, path: str, base: CacheSettings) -> RouteCache | None:
    """`cache = { ttl_s = 300 }` (or `cache = true` for the [cache] defaults); absent: off."""
    if raw is None or raw is False:
        return None
    defaults = RouteCache(ttl_s=base.ttl_s, max_entry_bytes=base.max_entry_bytes, scope=base.scope)
    if raw is True:
        return defaults
    if not isinstance(raw, Mapping):
        c.err(path, "must be true or a table like { ttl_s = 300 }")
        return None
    c.known(raw, ROUTE_CACHE_KEYS, path)
    return c.read(RouteCache, raw, path, defaults)
