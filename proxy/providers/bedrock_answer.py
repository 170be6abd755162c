"""Bedrock Converse answers (JSON, usage, errors) turned into OpenAI chat answers."""

from __future__ import annotations

import time
from typing import Any

import orjson

from proxy.core.errors import error_body
from proxy.core.exchange import Usage

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def finish_reason(stop: object) -> str:
    return FINISH_REASONS.get(stop, "stop") if isinstance(stop, str) else "stop"


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage(usage: object) -> dict[str, Any] | None:
    """Chat usage from Converse usage; cache reads and writes count as prompt tokens."""
    if not isinstance(usage, dict):
        return None
    cached = _int(usage, "cacheReadInputTokens")
    prompt = _int(usage, "inputTokens") + cached + _int(usage, "cacheWriteInputTokens")
    completion = _int(usage, "outputTokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def usage_of(body: bytes) -> Usage | None:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return converse_usage(obj.get("usage")) if isinstance(obj, dict) else None


def converse_usage(usage: object) -> Usage | None:
    """Usage from a Converse `usage` object: cache reads and writes are part of tokens_in."""
    u = openai_usage(usage)
    if u is None or not isinstance(usage, dict):
        return None
    return Usage.of_chat(u, _int(usage, "cacheWriteInputTokens"))


def tool_call(use: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": use.get("toolUseId", ""),
        "type": "function",
        "function": {
            "name": use.get("name", ""),
            "arguments": orjson.dumps(use.get("input") or {}).decode(),
        },
    }


def to_chat(body: bytes, model: str) -> bytes:
    """A `chat.completion` for a whole Converse answer."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(obj, dict):
        return body
    blocks = ((obj.get("output") or {}).get("message") or {}).get("content") or []
    text = "".join(b["text"] for b in blocks if isinstance(b, dict) and "text" in b)
    calls = [tool_call(b["toolUse"]) for b in blocks if isinstance(b, dict) and "toolUse" in b]
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    out: dict[str, Any] = {
        "id": "",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(obj.get("stopReason")),
            }
        ],
    }
    usage = openai_usage(obj.get("usage"))
    if usage is not None:
        out["usage"] = usage
    return orjson.dumps(out)


def error_to_openai(body: bytes) -> bytes:
    """An OpenAI-shaped error for a Bedrock error body (`{"message": ...}`)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    message = obj.get("message") or obj.get("Message") if isinstance(obj, dict) else None
    if isinstance(message, str):
        return error_body(message, "invalid_request_error", None)
    return error_body("The upstream answered with an error.", "api_error", None)
