"""The exchange: one client request from arrival to settle, the single record every stage fills."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.config.values import Config, Endpoint, Route
from proxy.core.failures import FailureKind


@dataclass(frozen=True, slots=True)
class Peek:
    """What routing needs from a request body; the body itself stays bytes."""

    model: str
    stream: bool
    include_usage: bool
    """The client asked for the usage chunk itself (`stream_options.include_usage`)."""
    has_stream_options: bool
    max_tokens: int | None = None
    """`max_tokens` (or `max_completion_tokens`) when the client set one: the reservation cap."""
    user: str | None = None
    """The body's `user` field (sticky routing and splits may hash it)."""
    tools: bool = False
    """The body carries a non-empty `tools` (or legacy `functions`) list (context rules)."""
    model_span: tuple[int, int] | None = field(default=None, compare=False)
    """Where the top-level `model` value's bytes sit in the forwarded body, when the peek
    proved it (an upstream model is then spliced in without searching the body again)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens an upstream reported for one answer."""

    tokens_in: int
    tokens_out: int
    tokens_cached: int = 0
    """Of tokens_in, those served from the provider's prompt cache (cheaper)."""
    tokens_cache_write: int = 0
    """Of tokens_in, those written to the provider's prompt cache (Anthropic, Bedrock)."""
    estimated: bool = False
    """The provider reported nothing: counted from bytes by the gateway."""

    @staticmethod
    def of_chat(u: Mapping[str, Any], cache_write: int = 0) -> Usage:
        """From a chat usage object the gateway built itself (well typed): prompt, completion,
        and `prompt_tokens_details.cached_tokens`."""
        details = u.get("prompt_tokens_details")
        cached = details.get("cached_tokens", 0) if isinstance(details, dict) else 0
        return Usage(
            u.get("prompt_tokens", 0), u.get("completion_tokens", 0), cached or 0, cache_write
        )


@dataclass(slots=True)
class Step:
    """One attempt as the routing trace tells it: where, when, and how it ended."""

    upstream: str
    tier: int
    at_s: float
    """Seconds from the request's arrival to the attempt's start."""
    outcome: str = "pending"
    """The upstream's status when it answered, else the failure kind."""
    took_s: float = 0.0


@dataclass(slots=True, eq=False)
class Exchange:
    """One client request: its snapshot, what was peeked, every attempt's outcome, the answer.

    Created when the request arrives and settled exactly once; the access line (and later
    metrics, the ledger and budgets) are fed from it at settle, nowhere else.
    """

    id: str
    endpoint: Endpoint
    snap: Config
    """The snapshot read once at arrival: the whole request runs on it, even across a reload."""
    started: float
    """Monotonic seconds at arrival."""
    client_headers: Mapping[str, str]
    path: str = ""
    client: str | None = None
    """The client's address as the socket saw it (a proxy in front shows as itself)."""
    body: bytes = b""
    peek: Peek | None = None
    route: Route | None = None
    arm: str | None = None
    """The A/B split arm (a route name) the request fell in; None when no split was passed."""
    forward_headers: dict[str, str] = field(default_factory=dict)
    """Headers every attempt sends whatever the upstream (the allowed client headers, the id);
    a provider adds its own (credential, dialect headers) on top."""
    affinity_key: str | None = None
    """Prompt-cache affinity: the conversation's key (a hash), on routes with `affinity`."""
    affinity_ttl_s: float = 0.0
    affinity_strict: bool = False
    """The key names a stored response (`previous_response_id`): only its upstream can answer."""
    pinned_to: str | None = None
    """The upstream the conversation was pinned to when the request arrived."""
    bodies: dict[object, bytes] = field(default_factory=dict)
    """Upstream bodies already built, by the provider's key (model id and options)."""
    tried: list[str] = field(default_factory=list)
    """Upstream names in attempt order."""
    attempts: int = 0
    failed: list[tuple[str, FailureKind]] = field(default_factory=list)
    """(upstream, kind) of every attempt that failed before the commit point, in order."""
    steps: list[Step] = field(default_factory=list)
    """Every attempt, for the routing trace (`x-gateway-explain`, /admin/requests/ID)."""
    explain: bool = False
    """The client asked for the routing trace in a response header, and may have it."""
    span: object | None = None
    """The request's OpenTelemetry span when tracing is on (owned by `proxy.ops.tracing`)."""
    considered: tuple[tuple[str, int, str], ...] = ()
    """(upstream, tier, score or why skipped) of every member of the route, when explained."""
    upstream: str | None = None
    """The upstream of the latest attempt (the one that answered, when one did)."""
    upstream_status: int | None = None
    failure: FailureKind | None = None
    """The latest failure seen: of an attempt, of the committed stream, or the client gone."""
    ttfb_s: float | None = None
    retry_after_s: float | None = None
    """The shortest pause a rate-limited upstream asked for."""
    usage: Usage | None = None
    status: int = 500
    """The status the client got (499 when it went away first)."""
    error_code: str | None = None
    """The `code` of the gateway's own error answer, or of the error event that ended a stream."""
    key_name: str | None = None
    """The virtual key's name (never the key itself); None when the gateway is open."""
    team: str | None = None
    reservation: object | None = None
    """What admission reserved (limits, budgets), owned by governance; settled exactly once."""
    cost_usd: float | None = None
    out_tokens_guess: int = 0
    """Output tokens counted from the answer's size, for when the provider reports none."""
    wall_started: float = 0.0
    hedge: str | None = None
    """A hedge attempt was sent: "started", then "won" (it answered first) or "lost"."""
    """Epoch seconds at arrival: budget periods and the ledger's time."""
    cache: str | None = None
    """On a route with a cache: "hit", "miss" or "skip" (the `x-gateway-cache` header)."""
    cache_ticket: object | None = None
    """A miss being recorded for the response cache (owned by `proxy.server.caching`)."""

    @property
    def stream(self) -> bool:
        return self.peek is not None and self.peek.stream
