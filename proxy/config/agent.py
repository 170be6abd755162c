"""A route's agent-traffic settings: keepalives, cache hygiene, prompt-cache affinity."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from proxy.config.reader import Reader, keys_of
from proxy.config.schema import custom, setting

MAX_BREAKPOINTS = 4
"""Anthropic refuses a request with more than four `cache_control` breakpoints."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Hygiene:
    """`cache_hygiene = {...}`: request rewrites that keep a prompt-cache prefix stable."""

    sort_tools: bool = setting(False)
    """Tools sorted by name, so the cached prefix does not change with the client's order."""
    max_breakpoints: int | None = setting(None, lo=1)
    """At most this many `cache_control` breakpoints (the earliest extra ones dropped)."""
    strip_cache_ttl: bool = setting(False)
    """`cache_control.ttl` removed, for upstreams that reject the field."""

    @property
    def active(self) -> bool:
        return self.sort_tools or self.max_breakpoints is not None or self.strip_cache_ttl


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentTraffic:
    """Per-route settings for agent traffic; a route without any of them has None."""

    keepalive_s: float | None = setting(None, lo=0.001)
    """While a committed stream is silent, an SSE comment is sent this often; None: never."""
    affinity: str | None = setting(None, choices=("prompt_cache",))
    """`"prompt_cache"`: a conversation stays on the upstream that holds its prompt cache."""
    affinity_header: str = setting("x-session-id")
    """The request header that names a conversation (else a hash of its cacheable prefix)."""
    affinity_ttl_s: float = setting(300.0, lo=1)
    """How long a pin lives without a cache read (the provider's default cache lifetime)."""
    affinity_long_ttl_s: float = setting(3600.0, lo=1)
    """Pin lifetime when the request asks for a 1 h `cache_control` TTL."""
    cache_hygiene: Hygiene | None = custom(None)


AGENT_KEYS = keys_of(AgentTraffic) | {"cache_hygiene"}
_HYGIENE_KEYS = keys_of(Hygiene)


def read_agent(c: Reader, raw: Mapping[str, object], path: str) -> AgentTraffic | None:
    """The agent settings of one [routes.NAME] table; None when it sets none of them."""
    if not any(key in raw for key in AGENT_KEYS):
        return None
    hygiene = None
    hraw = raw.get("cache_hygiene")
    if hraw is not None:
        hpath = f"{path}.cache_hygiene"
        if not isinstance(hraw, Mapping):
            c.err(hpath, "must be a table like { sort_tools = true, max_breakpoints = 4 }")
        else:
            c.known(hraw, _HYGIENE_KEYS, hpath)
            hygiene = c.read(Hygiene, hraw, hpath)
            mb = hygiene.max_breakpoints
            if mb is not None and mb > MAX_BREAKPOINTS:
                c.err(f"{hpath}.max_breakpoints", f"must be 1 .. {MAX_BREAKPOINTS}")
            if not hygiene.active:
                hygiene = None
    agent = c.read(AgentTraffic, raw, path, cache_hygiene=hygiene)
    if agent.affinity is None and "affinity_header" in raw:
        c.err(f"{path}.affinity_header", 'needs affinity = "prompt_cache"')
    return agent
