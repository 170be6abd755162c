"""The compiled, immutable config snapshot: frozen values the request path reads without merging."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from proxy.config.agent import AgentTraffic
from proxy.config.caching import CacheSettings, RouteCache
from proxy.config.healthcheck import HealthCheck
from proxy.config.hedging import Hedge
from proxy.config.keysource import KeySource
from proxy.config.rules import Rule, Split
from proxy.config.schema import custom, setting
from proxy.config.statesettings import StateSettings


class Strategy(StrEnum):
    """How one upstream is picked inside a tier."""

    WEIGHTED = "weighted"
    ROUND_ROBIN = "round_robin"
    LATENCY = "latency"
    LEAST_BUSY = "least_busy"
    COST = "cost"
    CAPACITY = "capacity"
    STICKY = "sticky"


class Provider(StrEnum):
    """The API dialects an upstream can speak; each has its adapter in `proxy.providers`."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    AZURE = "azure"
    GEMINI = "gemini"
    BEDROCK = "bedrock"


class Endpoint(StrEnum):
    """The endpoint families the gateway proxies; a provider maps each to its own path."""

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    MESSAGES = "messages"
    """Anthropic Messages (`POST /v1/messages`), for clients that speak it."""
    COUNT_TOKENS = "count_tokens"
    RESPONSES = "responses"
    """OpenAI Responses API (`POST /v1/responses`), passed through to upstreams that have it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Deadlines of one attempt, chosen for LLM traffic: no total cap on a healthy stream."""

    connect_s: float = setting(5.0, "connect_timeout_s", lo=0.001)
    """TCP (and TLS) connect to the upstream."""
    ttfb_s: float = setting(60.0, "ttfb_timeout_s", lo=0.001)
    """From sending the request to the response headers and the first body bytes."""
    idle_s: float = setting(60.0, "idle_timeout_s", lo=0.001)
    """Longest silence between two body chunks once the response has started."""
    total_s: float | None = setting(None, "total_timeout_s", lo=0.001)
    """Optional cap on a whole attempt, streams included; unset by default."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ejection:
    """Passive health policy: when an upstream is taken out of selection, and for how long."""

    consecutive_failures: int = setting(5, lo=1)
    base_s: float = setting(10.0)
    """First ejection time; the n-th ejection in a row lasts n times this, capped at max_s."""
    max_s: float = setting(300.0)
    jitter: float = setting(0.2)
    """Each ejection time is stretched by a random factor in [1, 1 + jitter]."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    """What an upstream costs, in USD per million tokens (overrides the shipped price table)."""

    input_per_mtok: float = setting(0.0)
    output_per_mtok: float = setting(0.0)
    cached_input_per_mtok: float | None = setting(None)
    """Prompt tokens served from the provider's cache; None: the input price."""
    cache_write_per_mtok: float | None = setting(None)
    """Prompt tokens written to the provider's cache (Anthropic: 1.25x input for 5 min, 2x for
    1 h); None: the input price."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    """One concrete target: provider dialect, base URL, credential and upstream model id."""

    name: str
    provider: Provider = custom(Provider.OPENAI)
    """The dialect spoken; a preset (`groq`, `ollama` ...) is compiled to its dialect."""
    preset: str = ""
    """The `provider` name as written (a dialect or a preset), for display."""
    base_url: str = custom()
    """Without a trailing slash and without the query, which is kept in `query`."""
    query: str = ""
    """A query the base URL carried (e.g. `api-version=...`), sent with every request."""
    model: str | None = setting(None)
    """Upstream model id the client's model name is rewritten to; None keeps the client's."""
    credential_ref: str | None = custom(None, "credential")
    """Where the credential comes from (`env:NAME`); safe to show."""
    credential: str | None = field(default=None, repr=False)
    timeouts: Timeouts
    ejection: Ejection
    stream_usage: bool = setting(True)
    """Ask for `stream_options.include_usage` on streams (and hide that chunk from clients
    that did not ask), so every stream reports its tokens."""
    price: Price | None = custom(None)
    """`price = {...}`; None: looked up by `model` in the shipped table (0 if absent)."""
    rpm: int | None = setting(None, lo=1)
    """The provider's requests-per-minute limit for this credential (`capacity` strategy)."""
    tpm: int | None = setting(None, lo=1)
    """The provider's tokens-per-minute limit for this credential (`capacity` strategy)."""
    anthropic_version: str = setting("2023-06-01")
    """The `anthropic-version` header sent to `provider = "anthropic"` upstreams."""
    short_tool_ids: bool = setting(False)
    """Rewrite tool-call ids to 9 letters and digits (Mistral refuses others, e.g. `toolu_...`)."""
    responses: bool = setting(False)
    """The server implements `/v1/responses` (the provider's preset says; the file may override)."""
    deployment: str | None = setting(None)
    """Azure: the deployment name in the path (it chooses the model)."""
    api_version: str | None = setting(None)
    """Azure: the `api-version` query parameter."""
    region: str | None = setting(None)
    """Bedrock: the AWS region (signed into every request; it makes the default base URL)."""
    aws_key_id_ref: str | None = custom(None, "access_key_id")
    aws_key_id: str | None = field(default=None, repr=False)
    aws_token_ref: str | None = custom(None, "session_token")
    aws_token: str | None = field(default=None, repr=False)
    """Bedrock: the AWS access key id and optional session token (`credential` holds the secret)."""
    max_inflight: int | None = setting(None, lo=1)
    """Attempts in flight to this upstream at most; beyond it it is skipped like a busy one."""
    health: HealthCheck | None = custom(None)
    """`health = {...}`: an active health check (a GET on the model list); None: off."""
    fingerprint: str
    """Identity of what selection stats describe; stats survive a reload while it is unchanged."""


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
    sticky_key: KeySource | None = None
    """`strategy = "sticky"`: what the ring hashes (from the origin route's `sticky_key`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """A model name clients send, flattened into ordered tiers (the fallback chain)."""

    name: str
    strategy: Strategy = custom()
    tiers: tuple[Tier, ...] = custom()
    max_attempts: int = custom()
    fallback: tuple[str, ...] = custom()
    hedge: Hedge | None = custom(None)
    """`hedge = {...}`: a second attempt on another upstream when the first is slow."""
    cache: RouteCache | None = custom(None)
    """`cache = { ttl_s = 300 }`: answers kept and served again; None: no cache, no cost."""
    sticky_key: KeySource | None = custom(None)
    """`sticky_key = "header:NAME" | "user"`: what `strategy = "sticky"` hashes."""
    sticky: bool = False
    """Some tier of the chain is sticky: the request's key sources are gathered (else skipped)."""
    rules: tuple[Rule, ...] = custom(())
    """`rules = [{ if = {...}, then = "route" }]`: context rules, first match wins."""
    split: Split | None = custom(None)
    """`split = { "a" = 90, "b" = 10 }`: an A/B split between two or more routes (the arms)."""
    split_key: None = custom(None)
    """`split_key = "key" | "user" | "header:NAME"` (read into `split.key`)."""
    redirects: bool = False
    """Rules or a split may send the request to another route (else one check, skipped)."""
    agent: AgentTraffic | None = None
    """Keepalives, cache hygiene, prompt-cache affinity (proxy.config.agent); None: none."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Defaults:
    """[defaults]: what every upstream and route inherits unless it says otherwise."""

    max_attempts: int = setting(3, lo=1)
    panic: bool = setting(True)
    """If every upstream of every tier is out of selection, try them anyway (Envoy's panic mode)."""
    max_rate_limit_pause_s: float = setting(60.0, lo=0.0)
    """Longest pause a 429's `Retry-After` (or reset header) can put on an upstream; one probe
    request goes when the pause ends."""
    reserve_max_tokens: int = setting(1024, lo=1)
    """Output tokens reserved (budgets, TPM) for a request that sets no `max_tokens`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """Process-level settings of the listening side."""

    host: str = custom("127.0.0.1", "listen")
    port: int = custom(8080, "listen")
    max_body_bytes: int = setting(64 * 2**20, "max_body_mb", lo=0.001, unit=2**20)
    """Request body cap: large enough for prompts with several base64 images."""
    max_response_bytes: int = setting(128 * 2**20, "max_response_mb", lo=0.001, unit=2**20)
    """Cap on a whole (non-stream) upstream answer, which is held in memory before it is sent;
    generous enough for a large embeddings batch. Streams are relayed as they come, uncapped."""
    drain_timeout_s: float = setting(60.0)
    """On SIGTERM, how long in-flight requests and streams may run before they are ended."""
    workers: int = custom(1)
    """Worker processes on one port (`"auto"`: one per CPU)."""
    access_log: bool = setting(True)
    log_level: str = setting("info", choices=("debug", "error", "info", "warning"))
    watch: bool = setting(True)
    """Reload when gateway.toml changes on disk (SIGHUP always reloads)."""
    readyz_detail: str = setting("loopback", choices=("always", "loopback", "never"))
    """Who sees per-upstream state on /readyz; everyone else gets only ready or not."""
    keys_file: str = setting("keys.toml")
    """Virtual keys and teams, relative to gateway.toml's folder; absent file: open gateway."""
    require_keys: bool = setting(False)
    """Refuse to start (or reload) without a keys file, rather than serve openly."""
    ledger: str | None = setting(None)
    """SQLite usage ledger, relative to gateway.toml's folder; None: no ledger."""
    budget_webhook: str | None = setting(None)
    """URL POSTed once per period when a key or team passes its soft budget threshold."""
    reload_settle_s: float = setting(0.3, "reload_settle_ms", lo=0, unit=0.001)
    """A changed file is applied only once its content stayed the same this long."""
    header_timeout_s: float = setting(10.0, lo=0.001)
    """A connection must deliver complete request headers this soon after its first byte (or
    after opening); a client that trickles them (slowloris) gets a 408 and is closed."""
    body_timeout_s: float = setting(30.0, lo=0.001)
    """Longest wait between two chunks of a request body; beyond it a 408."""
    keepalive_timeout_s: float = setting(75.0, lo=0.001)
    """An idle keep-alive connection is closed after this (restart to change)."""
    max_connections: int | None = setting(10000, lo=1)
    """Open client connections per process; beyond it a new one gets a 503 and is closed."""
    max_requests: int | None = setting(None, lo=1)
    """Requests in flight per process; beyond it a 503 with Retry-After. None: no cap."""
    max_headers: int = setting(128, lo=1)
    """Request header lines accepted (restart to change); beyond it a 431."""
    explain: bool = setting(False)
    """Any client may ask for the routing trace (`x-gateway-explain: 1`); otherwise only with
    the admin token in `x-gateway-admin-token`."""
    max_inflight_body_bytes: int = setting(256 * 2**20, "max_inflight_body_mb", lo=1, unit=2**20)
    """Request bodies held at once, all requests together; beyond it large ones get a 503."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Admin:
    """[admin]: the operations listener (metrics, status, drain); absent section: no listener."""

    host: str = custom("127.0.0.1", "listen")
    port: int = custom(9090, "listen")
    token_ref: str | None = custom(None, "token")
    """Where the admin token comes from (`env:NAME`); safe to show."""
    token: str | None = field(default=None, repr=False)
    metrics_open: bool = setting(False)
    """Loopback scrapers read /metrics without the token."""
    loopback_without_token: bool = setting(False)
    """Loopback callers use every admin endpoint without a token (explicit opt-in)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tracing:
    """[tracing]: OpenTelemetry spans (needs the `otel` extra); absent section: off, free."""

    endpoint: str = setting("http://127.0.0.1:4318/v1/traces")
    """OTLP over HTTP traces endpoint (an OpenTelemetry Collector, Jaeger, Tempo ...)."""
    service_name: str = setting("llm-gateway")
    sample_ratio: float = setting(1.0)
    """Share of requests traced (a client's sampled `traceparent` is followed as given)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """One validated snapshot of gateway.toml."""

    server: Server
    upstreams: Mapping[str, Upstream]
    routes: Mapping[str, Route]
    panic: bool
    """If every upstream of every tier is out of selection, try them anyway (Envoy's panic mode)."""
    max_rate_limit_pause_s: float = 60.0
    """From [defaults]: the cap on a pause asked for by a 429."""
    reserve_max_tokens: int = 1024
    admin: Admin | None = None
    """The admin listener; None when gateway.toml has no [admin] section."""
    tracing: Tracing | None = None
    """OpenTelemetry export; None when gateway.toml has no [tracing] section (restart to change)."""
    state: StateSettings = field(default_factory=StateSettings)
    """[state]: the limits-and-budgets backend (memory or a shared Redis)."""
    cache: CacheSettings = field(default_factory=CacheSettings)
    """[cache]: the response cache's defaults and store."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Every resolved credential, so log redaction can recognise them."""


class ConfigError(Exception):
    """A config that cannot be used; `errors` name the TOML path of each problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = tuple(errors)
