"""How the fake provider answers one request: status, delays, content and faults."""

from __future__ import annotations

import argparse
import contextlib
import math
from dataclasses import dataclass, fields
from functools import lru_cache

import orjson

DIALECTS = ("openai", "anthropic", "gemini", "bedrock")
FAULTS = frozenset(
    {"reset_before_headers", "reset_mid_stream", "hang", "drip", "close_before_headers"}
)
_INT_FIELDS = (
    "status",
    "chunks",
    "fault_after_chunks",
    "prompt_tokens",
    "error_status",
    "cached_tokens",
)
_FLOAT_FIELDS = (
    "latency_s",
    "ttft_s",
    "chunk_delay_s",
    "tokens_per_s",
    "drip_interval_s",
    "error_rate",
)
_STR_FIELDS = ("retry_after", "retry_after_ms", "text", "fault", "tool", "stream_error")
_NULLABLE = frozenset(
    {
        "error_body",
        "retry_after",
        "retry_after_ms",
        "tokens_per_s",
        "fault",
        "prompt_tokens",
        "tool",
        "stream_error",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Behaviour:
    """One answer: the defaults mean a healthy, fast, 200 response with 5 content chunks."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    error_body: bytes | None = None
    retry_after: str | None = None
    retry_after_ms: str | None = None
    latency_s: float = 0.0
    ttft_s: float = 0.0
    chunk_delay_s: float = 0.0
    tokens_per_s: float | None = None
    chunks: int = 5
    text: str = ""
    fault: str | None = None
    fault_after_chunks: int = 2
    drip_interval_s: float = 0.5
    prompt_tokens: int | None = None
    cached_tokens: int = 0
    """Prompt tokens reported as read from the provider's prompt cache (Anthropic dialect)."""
    tool: str | None = None
    """Answer with a call to this tool instead of text; `text` (JSON) is its arguments."""
    stream_error: str | None = None
    """A stream answered 200 that fails in-band before any content with this error type
    (`overloaded_error`, `api_error`, ...): see proxy.fake.inband_errors."""
    # A fraction of requests answered with error_status instead (outage simulation);
    # the provider draws from a seeded RNG so runs are reproducible.
    error_rate: float = 0.0
    error_status: int = 500

    def __post_init__(self) -> None:
        for name in ("status", "error_status"):
            code = getattr(self, name)
            if not 200 <= code <= 599:
                raise ValueError(f"{name} must be a final HTTP status (200-599), got {code}")
        for name in ("latency_s", "ttft_s", "chunk_delay_s", "chunks", "fault_after_chunks"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.tokens_per_s is not None and not 0 < self.tokens_per_s < math.inf:
            raise ValueError(f"tokens_per_s must be > 0, got {self.tokens_per_s}")
        if not 0 < self.drip_interval_s < math.inf:
            raise ValueError(f"drip_interval_s must be > 0, got {self.drip_interval_s}")
        if self.prompt_tokens is not None and self.prompt_tokens < 0:
            raise ValueError(f"prompt_tokens must be >= 0, got {self.prompt_tokens}")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be within [0, 1], got {self.error_rate}")
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"fault must be one of {sorted(FAULTS)}, got {self.fault!r}")

    @property
    def chunk_interval_s(self) -> float:
        """The pause between two content chunks (one chunk is one token)."""
        if self.tokens_per_s is not None:
            return 1.0 / self.tokens_per_s
        return self.chunk_delay_s

    def pieces(self) -> tuple[str, ...]:
        """The content split into `chunks` pieces; joined they give the whole text."""
        return split_text(self.text, self.chunks)

    def prompt_tokens_for(self, body: bytes) -> int:
        """Prompt tokens reported in usage: configured, else a chars/4 estimate."""
        if self.prompt_tokens is not None:
            return self.prompt_tokens
        return max(1, len(body) // 4)

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> Behaviour:
        """Build from a JSON object (control API, config); ValueError says what is wrong."""
        raw: object = obj
        if not isinstance(raw, dict):
            raise ValueError(f"behaviour must be a JSON object, got {type(raw).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(map(str, set(raw) - known))
        if unknown:
            raise ValueError(f"unknown behaviour field(s): {', '.join(unknown)}")
        kwargs = {str(key): _field_from_json(str(key), value) for key, value in obj.items()}
        return cls(**kwargs)  # type: ignore[arg-type]

    def to_json(self) -> dict[str, object]:
        """The JSON form read back by from_json (only fields that differ from the defaults)."""
        out: dict[str, object] = {}
        default = _DEFAULT
        for f in fields(self):
            value = getattr(self, f.name)
            if value == getattr(default, f.name):
                continue
            if f.name == "headers":
                out[f.name] = [list(pair) for pair in value]
            elif f.name == "error_body":
                out[f.name] = value.decode("utf-8", "replace")
            else:
                out[f.name] = value
        return out


_DEFAULT = Behaviour()


def _field_from_json(key: str, value: object) -> object:
    if value is None:
        if key not in _NULLABLE:
            raise ValueError(f"{key} must not be null")
        return None
    if key in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} must be an integer, got {value!r}")
        return value
    if key in _FLOAT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key} must be a number, got {value!r}")
        return float(value)
    if key in _STR_FIELDS:
        if not isinstance(value, str):
            raise ValueError(f"{key} must be a string, got {value!r}")
        return value
    if key == "headers":
        return _headers_from_json(value)
    return _body_from_json(value)


def _headers_from_json(value: object) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    if isinstance(value, dict):
        items: list[object] = [[k, v] for k, v in value.items()]
    elif isinstance(value, list):
        items = value
    else:
        raise ValueError("headers must be an object or a list of [name, value] pairs")
    for item in items:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or not all(isinstance(part, str) for part in item)
        ):
            raise ValueError(f"headers entries must be [name, value] strings, got {item!r}")
        name, val = str(item[0]), str(item[1])
        if not name or any(c in name + val for c in "\r\n"):
            raise ValueError(f"invalid header {name!r}")
        pairs.append((name, val))
    return tuple(pairs)


def _body_from_json(value: object) -> bytes:
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict | list):
        return orjson.dumps(value)
    raise ValueError(f"error_body must be a string or a JSON value, got {value!r}")


@lru_cache(maxsize=256)
def split_text(text: str, chunks: int) -> tuple[str, ...]:
    """Deterministic content: `text` cut into `chunks` near-equal pieces, else tok0 tok1 ..."""
    if chunks <= 0:
        return ()
    if not text:
        return tuple(f"tok{i}" if i == 0 else f" tok{i}" for i in range(chunks))
    size = len(text)
    return tuple(text[i * size // chunks : (i + 1) * size // chunks] for i in range(chunks))


def _header_arg(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {raw!r}")
    return name.strip(), value.strip()


_CLI_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--latency", "latency_s", float, "seconds before the response headers"),
    ("--ttft", "ttft_s", float, "seconds after the headers before the first event"),
    ("--chunk-delay", "chunk_delay_s", float, "seconds between content chunks"),
    ("--tokens-per-s", "tokens_per_s", float, "content chunks per second (instead of delay)"),
    ("--chunks", "chunks", int, "content chunks (= completion tokens) per answer"),
    ("--text", "text", str, "content to send (default: tok0 tok1 ...)"),
    ("--status", "status", int, "HTTP status of every answer"),
    ("--retry-after", "retry_after", str, "Retry-After header value"),
    ("--retry-after-ms", "retry_after_ms", str, "retry-after-ms header value"),
    ("--fault", "fault", str, "fault to inject in every answer"),
    ("--fault-after-chunks", "fault_after_chunks", int, "events before reset_mid_stream"),
    ("--drip-interval", "drip_interval_s", float, "seconds between drip comments"),
    ("--prompt-tokens", "prompt_tokens", int, "prompt tokens reported in usage"),
    ("--error-rate", "error_rate", float, "fraction of answers failing with --error-status"),
    ("--error-status", "error_status", int, "status used by --error-rate"),
)


_METAVARS: dict[type, str] = {int: "N", float: "X", str: "TEXT"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `gateway fake-upstream`; a flag the parser already has is left alone."""
    _add(parser, "--host", default="127.0.0.1", help="address to listen on")
    _add(parser, "--port", type=int, default=0, help="port to listen on (0: any free port)")
    _add(parser, "--dialect", choices=DIALECTS, default="openai", help="API dialect to speak")
    _add(parser, "--name", default="fake", help="sent back in x-fake-name")
    for flag, dest, kind, text in _CLI_FLAGS:
        extra: dict[str, object] = {"metavar": _METAVARS[kind]}
        if dest == "fault":
            extra = {"choices": sorted(FAULTS)}
        _add(parser, flag, dest=f"fake_{dest}", type=kind, default=None, help=text, **extra)
    _add(
        parser,
        "--header",
        dest="fake_headers",
        type=_header_arg,
        action="append",
        default=None,
        metavar="NAME:VALUE",
        help="extra response header (repeatable)",
    )


def _add(parser: argparse.ArgumentParser, flag: str, **kwargs: object) -> None:
    # A flag the caller already defined (e.g. --port in proxy/cli.py) is left to it.
    with contextlib.suppress(argparse.ArgumentError):
        parser.add_argument(flag, **kwargs)  # type: ignore[arg-type]


def behaviour_from_args(ns: argparse.Namespace) -> Behaviour:
    """The default Behaviour the flags describe (ValueError when they are invalid)."""
    kwargs: dict[str, object] = {}
    for _flag, dest, _kind, _text in _CLI_FLAGS:
        value = getattr(ns, f"fake_{dest}", None)
        if value is not None:
            kwargs[dest] = value
    headers = getattr(ns, "fake_headers", None)
    if headers:
        kwargs["headers"] = tuple(headers)
    return Behaviour(**kwargs)  # type: ignore[arg-type]
