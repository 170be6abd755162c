"""`[state]`: where limits and budgets are counted (this process, or a Redis shared by a fleet)."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.config.schema import custom, setting


@dataclass(frozen=True, slots=True, kw_only=True)
class StateSettings:
    """The state backend of limits, budgets and shared provider signals."""

    backend: str = setting("memory", choices=("memory", "redis"))
    """`memory`: this process only; `redis`: every gateway on the same Redis shares counters."""
    url: str | None = custom(None)
    """`redis://[user:password@]host:port/db` or `env:NAME` holding it (credentials stay out
    of the file); resolved at load, never logged."""
    url_ref: str = field(default="", repr=False)
    """What the file says (`env:NAME` or the URL with any password masked), for logs."""
    prefix: str = setting("llmgw:")
    """Prepended to every Redis key, so several fleets (or tests) can share one database."""
    on_state_error: str = setting("closed", choices=("closed", "open"))
    """Redis unreachable: `closed` answers 503 + Retry-After to requests with limits; `open`
    admits them, counts locally and adds the spending to Redis when it is back."""
    timeout_s: float = setting(0.5, "timeout_ms", lo=1, unit=0.001)
    """Deadline of one Redis call; past it Redis counts as down until a probe answers."""
    pool_size: int = setting(32, lo=1)
    """Connections in the pool of each gateway process."""
    parallel_lease_s: float = setting(1800.0, lo=1)
    """A request counted in `max_parallel` by a process that died is forgotten after this."""

    def __repr__(self) -> str:
        return f"StateSettings(backend={self.backend!r}, url={self.url_ref!r})"
