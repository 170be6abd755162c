"""An incident scenario file (TOML): providers, their incident phases, the load, the option sets."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, replace

from proxy.fake.behaviour import Behaviour
from proxy.fake.timeline import Phase, Timeline

KINDS = ("outage", "refused", "reset", "throttle", "slow", "resets", "healthy")
"""outage: 5xx answers; refused: the listener closed; reset: RST before the headers;
throttle: 429 with Retry-After; slow: TTFT x factor; resets: streams reset mid-way;
healthy: the provider's normal answers (a recovery written out)."""

_PROVIDER_KEYS = frozenset(
    {"model", "weight", "ttft_ms", "chunks", "chunk_delay_ms", "prompt_tokens", "phases"}
)
_PHASE_KEYS = frozenset(
    {"kind", "from_s", "to_s", "rate", "status", "retry_after_s", "factor", "after_chunks"}
)


class ScenarioError(ValueError):
    """A scenario file that cannot be run; the message names the TOML path."""


@dataclass(frozen=True, slots=True)
class Load:
    """The replayed load: `requests` started evenly over `duration_s`, `concurrency` at most."""

    requests: int = 200
    concurrency: int = 8
    duration_s: float = 10.0
    stream_share: float = 0.5
    prompt_chars: int = 400
    max_tokens: int = 64


@dataclass(frozen=True, slots=True)
class PhaseSpec:
    """One incident phase as written (seconds on the scenario's own clock)."""

    kind: str
    from_s: float
    to_s: float
    rate: float = 1.0
    status: int = 503
    retry_after_s: float = 5.0
    factor: float = 10.0
    after_chunks: int = 2


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One fake provider (an OpenAI-dialect upstream of the simulated route)."""

    name: str
    model: str = "gpt-4o-mini"
    weight: int = 1
    ttft_ms: float = 40.0
    chunks: int = 16
    chunk_delay_ms: float = 5.0
    prompt_tokens: int | None = None
    phases: tuple[PhaseSpec, ...] = ()

    def behaviour(self) -> Behaviour:
        """Its answers when nothing is wrong."""
        return Behaviour(
            ttft_s=self.ttft_ms / 1000,
            chunks=self.chunks,
            chunk_delay_s=self.chunk_delay_ms / 1000,
            prompt_tokens=self.prompt_tokens,
        )

    def timeline(self, scale: float) -> Timeline:
        """Its phases with every scenario duration multiplied by `scale`."""
        base = self.behaviour()
        return Timeline(base, tuple(_phase(base, p, scale) for p in self.phases))


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole scenario: what it shows, the providers, the load and the option sets to compare."""

    name: str
    description: str
    seed: int
    time_scale: float
    load: Load
    providers: tuple[ProviderSpec, ...]
    options: tuple[tuple[str, dict[str, object]], ...]
    gateway: dict[str, object]


_LOAD = Load()
_PROVIDER = ProviderSpec(name="")


def _phase(base: Behaviour, p: PhaseSpec, scale: float) -> Phase:
    start, end = p.from_s * scale, p.to_s * scale
    b = base
    if p.kind == "outage":
        b = replace(base, status=p.status)
    elif p.kind == "reset":
        b = replace(base, fault="reset_before_headers")
    elif p.kind == "throttle":
        wait = p.retry_after_s * scale
        b = replace(
            base,
            status=429,
            retry_after=str(max(1, math.ceil(wait))),
            retry_after_ms=f"{wait * 1000:.0f}",
        )
    elif p.kind == "slow":
        b = replace(base, ttft_s=base.ttft_s * p.factor)
    elif p.kind == "resets":
        b = replace(base, fault="reset_mid_stream", fault_after_chunks=p.after_chunks)
    return Phase(start, end, b, rate=p.rate, refuse=p.kind == "refused", label=p.kind)


def parse(text: str, source: str = "scenario") -> Scenario:
    """The scenario a TOML text describes; ScenarioError names what is wrong and where."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: TOML syntax: {exc}") from None
    try:
        return _scenario(data)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{source}: {exc}") from None


def _scenario(data: dict[str, object]) -> Scenario:
    _only(
        data,
        {"name", "description", "seed", "time_scale", "load", "providers", "options", "gateway"},
        "",
    )
    scale = _num(data, "time_scale", 1.0, "")
    if not scale > 0:
        raise ValueError("time_scale must be > 0")
    load = _load(_table(data, "load"))
    providers = tuple(_provider(name, raw) for name, raw in _table(data, "providers").items())
    if not providers:
        raise ValueError("providers: at least one [providers.NAME] is needed")
    options = tuple(
        (name, dict(_as_table(raw, f"options.{name}")))
        for name, raw in _table(data, "options").items()
    )
    if not options:
        options = (("weighted", {"strategy": "weighted"}),)
    seed = data.get("seed", 1)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError("seed must be an integer")
    return Scenario(
        name=str(data.get("name", "scenario")),
        description=str(data.get("description", "")),
        seed=seed,
        time_scale=scale,
        load=load,
        providers=providers,
        options=options,
        gateway=dict(_table(data, "gateway")),
    )


def _load(raw: dict[str, object]) -> Load:
    _only(
        raw,
        {"requests", "concurrency", "duration_s", "stream_share", "prompt_chars", "max_tokens"},
        "load.",
    )
    load = Load(
        requests=_int(raw, "requests", _LOAD.requests, "load."),
        concurrency=_int(raw, "concurrency", _LOAD.concurrency, "load."),
        duration_s=_num(raw, "duration_s", _LOAD.duration_s, "load."),
        stream_share=_num(raw, "stream_share", _LOAD.stream_share, "load."),
        prompt_chars=_int(raw, "prompt_chars", _LOAD.prompt_chars, "load."),
        max_tokens=_int(raw, "max_tokens", _LOAD.max_tokens, "load."),
    )
    if load.requests < 1 or load.concurrency < 1 or load.max_tokens < 1:
        raise ValueError("load.requests, load.concurrency and load.max_tokens must be >= 1")
    if not 0.0 <= load.stream_share <= 1.0 or load.duration_s < 0:
        raise ValueError("load.stream_share must be within [0, 1] and load.duration_s >= 0")
    return load


def _provider(name: str, raw: object) -> ProviderSpec:
    where = f"providers.{name}."
    table = _as_table(raw, where[:-1])
    _only(table, _PROVIDER_KEYS, where)
    phases_raw = table.get("phases", [])
    if not isinstance(phases_raw, list):
        raise ValueError(f"{where}phases must be an array of tables")
    phases = tuple(_phase_spec(p, f"{where}phases[{i}].") for i, p in enumerate(phases_raw))
    prompt = table.get("prompt_tokens")
    return ProviderSpec(
        name=name,
        model=str(table.get("model", _PROVIDER.model)),
        weight=_int(table, "weight", _PROVIDER.weight, where),
        ttft_ms=_num(table, "ttft_ms", _PROVIDER.ttft_ms, where),
        chunks=_int(table, "chunks", _PROVIDER.chunks, where),
        chunk_delay_ms=_num(table, "chunk_delay_ms", _PROVIDER.chunk_delay_ms, where),
        prompt_tokens=None if prompt is None else _int(table, "prompt_tokens", 0, where),
        phases=phases,
    )


def _phase_spec(raw: object, where: str) -> PhaseSpec:
    table = _as_table(raw, where[:-1])
    _only(table, _PHASE_KEYS, where)
    kind = table.get("kind")
    if kind not in KINDS:
        raise ValueError(f"{where}kind must be one of {', '.join(KINDS)}, got {kind!r}")
    spec = PhaseSpec(
        kind=str(kind),
        from_s=_num(table, "from_s", 0.0, where),
        to_s=_num(table, "to_s", math.inf, where),
        rate=_num(table, "rate", 1.0, where),
        status=_int(table, "status", 503, where),
        retry_after_s=_num(table, "retry_after_s", 5.0, where),
        factor=_num(table, "factor", 10.0, where),
        after_chunks=_int(table, "after_chunks", 2, where),
    )
    if not spec.to_s > spec.from_s >= 0:
        raise ValueError(f"{where}to_s must be after from_s (both >= 0)")
    if spec.kind == "outage" and not 500 <= spec.status <= 599:
        raise ValueError(f"{where}status of an outage must be a 5xx, got {spec.status}")
    if not 0.0 <= spec.rate <= 1.0:
        raise ValueError(f"{where}rate must be within [0, 1]")
    if spec.kind == "refused" and spec.rate != 1.0:
        raise ValueError(f"{where}rate: a refused listener refuses everyone (rate = 1)")
    return spec


def _only(table: dict[str, object], known: set[str] | frozenset[str], where: str) -> None:
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise ValueError(f"{where}{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")


def _table(data: dict[str, object], key: str) -> dict[str, object]:
    return _as_table(data.get(key, {}), key)


def _as_table(raw: object, where: str) -> dict[str, object]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be a table")
    return {str(k): v for k, v in raw.items()}


def _int(table: dict[str, object], key: str, default: int, where: str) -> int:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}{key} must be an integer >= 0, got {value!r}")
    return value


def _num(table: dict[str, object], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{where}{key} must be a number >= 0, got {value!r}")
    return float(value)
