"""Token usage reported by an upstream, read from a JSON body or one SSE event."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

MAX_PARSED_BODY = 1 << 20
"""Bodies above this size are not parsed for usage (embeddings of big batches)."""


@dataclass(frozen=True, slots=True)
class Usage:
    tokens_in: int
    tokens_out: int


def _from_object(data: object) -> Usage | None:
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return None
    tin = usage.get("prompt_tokens", usage.get("input_tokens"))
    tout = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not isinstance(tin, int) or not isinstance(tout, int):
        return None
    return Usage(tokens_in=tin, tokens_out=tout)


def from_body(body: bytes) -> Usage | None:
    """Usage of a non-streaming response, if it reports one."""
    if len(body) > MAX_PARSED_BODY or b'"usage"' not in body:
        return None
    try:
        return _from_object(orjson.loads(body))
    except orjson.JSONDecodeError:
        return None


def from_event(data: bytes) -> Usage | None:
    """Usage carried by one SSE data payload (the include_usage chunk), if any."""
    if b'"usage"' not in data or b'"usage":null' in data:
        return None
    try:
        return _from_object(orjson.loads(data))
    except orjson.JSONDecodeError:
        return None
