"""The compiled, immutable config snapshot: frozen values the request path reads without merging."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Strategy(StrEnum):
    """How one upstream is picked inside a tier."""

    WEIGHTED = "weighted"
    ROUND_ROBIN = "round_robin"
    LATENCY = "latency"
    LEAST_BUSY = "least_busy"


class Endpoint(StrEnum):
    """The OpenAI endpoints the gateway proxies; the value is the path below the base URL."""

    CHAT = "/chat/completions"
    COMPLETIONS = "/completions"
    EMBEDDINGS = "/embeddings"


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Deadlines of one attempt, chosen for LLM traffic: no total cap on a healthy stream."""

    connect_s: float = 5.0
    """TCP (and TLS) connect to the upstream."""
    ttfb_s: float = 60.0
    """From sending the request to the response headers and the first body bytes."""
    idle_s: float = 60.0
    """Longest silence between two body chunks once the response has started."""
    total_s: float | None = None
    """Optional cap on a whole attempt, streams included; unset by default."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ejection:
    """Passive health policy: when an upstream is taken out of selection, and for how long."""

    consecutive_failures: int = 5
    base_s: float = 10.0
    """First ejection time; the n-th ejection in a row lasts n times this, capped at max_s."""
    max_s: float = 300.0
    jitter: float = 0.2
    """Each ejection time is stretched by a random factor in [1, 1 + jitter]."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    """One concrete target: provider dialect, base URL, credential and upstream model id."""

    name: str
    provider: str
    base_url: str
    model: str | None
    """Upstream model id the client's model name is rewritten to; None keeps the client's."""
    credential_ref: str | None
    """Where the credential comes from (`env:NAME`); safe to show."""
    credential: str | None = field(default=None, repr=False)
    timeouts: Timeouts
    ejection: Ejection
    stream_usage: bool = True
    """Ask for `stream_options.include_usage` on streams (and hide that chunk from clients
    that did not ask), so every stream reports its tokens."""
    fingerprint: str
    """Identity of what selection stats describe; stats survive a reload while it is unchanged."""

    def url(self, endpoint: Endpoint) -> str:
        return self.base_url + endpoint.value


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One upstream inside a tier, with its weight and the deadlines that apply on this route."""

    upstream: Upstream
    weight: int
    timeouts: Timeouts


@dataclass(frozen=True, slots=True, kw_only=True)
class Tier:
    """The upstreams tried at one priority level; `key` names it for selector state."""

    key: str
    strategy: Strategy
    members: tuple[Member, ...]
    origin: str
    """The route whose tiers this came from (differs from the route for fallback tiers)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """A model name clients send, flattened into ordered tiers (the fallback chain)."""

    name: str
    strategy: Strategy
    tiers: tuple[Tier, ...]
    max_attempts: int
    fallback: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """Process-level settings of the listening side."""

    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 64 * 1024 * 1024
    """Request body cap: large enough for prompts with several base64 images."""
    drain_timeout_s: float = 60.0
    """On SIGTERM, how long in-flight requests and streams may run before they are ended."""
    workers: int = 1
    access_log: bool = True
    log_level: str = "info"
    watch: bool = True
    """Reload when gateway.toml changes on disk (SIGHUP always reloads)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """One validated snapshot of gateway.toml."""

    server: Server
    upstreams: Mapping[str, Upstream]
    routes: Mapping[str, Route]
    panic: bool
    """If every upstream of every tier is out of selection, try them anyway (Envoy's panic mode)."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Every resolved credential, so log redaction can recognise them."""


class ConfigError(Exception):
    """A config that cannot be used; `errors` name the TOML path of each problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = tuple(errors)
