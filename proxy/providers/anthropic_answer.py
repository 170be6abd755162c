"""Anthropic Messages answers (whole JSON, usage, errors) turned into OpenAI chat answers."""

from __future__ import annotations

import time
from typing import Any

import orjson

from proxy.core.errors import error_body
from proxy.core.exchange import Usage

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Messages `stop_reason` -> chat `finish_reason`; anything unknown reads as `stop`."""


def finish_reason(stop_reason: object) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage(usage: object) -> dict[str, Any] | None:
    """Chat usage from Messages usage: the prompt counts cached reads and cache writes too."""
    if not isinstance(usage, dict):
        return None
    cached = _int(usage, "cache_read_input_tokens")
    prompt = _int(usage, "input_tokens") + _int(usage, "cache_creation_input_tokens") + cached
    completion = _int(usage, "output_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def messages_usage(usage: object) -> Usage | None:
    """Usage from a Messages `usage` object: cache reads and writes are part of tokens_in."""
    u = openai_usage(usage)
    if u is None or not isinstance(usage, dict):
        return None
    return Usage.of_chat(u, _int(usage, "cache_creation_input_tokens"))


def usage_of(body: bytes) -> Usage | None:
    """Usage of a whole Messages answer."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return messages_usage(obj.get("usage")) if isinstance(obj, dict) else None


def to_chat(body: bytes) -> bytes:
    """A `chat.completion` for a whole Messages answer (text joined, tool_use as tool_calls)."""
    try:
        msg = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(msg, dict):
        return body
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in msg.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            thoughts.append(block.get("thinking", ""))
        elif kind == "tool_use":
            calls.append(
                {
                    "id": block.get("id", ""),
                    "type": "function",
                    "function": {
                        "name": block.get("name", ""),
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts else None,
        "refusal": None,
    }
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    out: dict[str, Any] = {
        "id": msg.get("id", ""),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": msg.get("model", ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(msg.get("stop_reason")),
            }
        ],
    }
    usage = openai_usage(msg.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return orjson.dumps(out)


def error_to_openai(body: bytes) -> bytes:
    """An OpenAI-shaped error for a Messages error body (`{"type":"error","error":{...}}`)."""
    kind, message = error_fields(body)
    return error_body(message, kind, kind)


def error_fields(body: bytes) -> tuple[str, str]:
    """(type, message) of a Messages error body; generic values when it is not one."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict):
        kind, message = err.get("type"), err.get("message")
        if isinstance(kind, str) and isinstance(message, str):
            return kind, message
    return "api_error", "The upstream answered with an error."
