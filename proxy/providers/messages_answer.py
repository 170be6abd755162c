"""OpenAI chat answers (whole JSON and errors) turned into Anthropic Messages answers."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.dialect_errors import anthropic_error

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
"""Chat `finish_reason` -> Messages `stop_reason`; anything else reads as `end_turn`."""


def stop_reason(finish: object) -> str:
    return STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def messages_usage(usage: object) -> dict[str, int]:
    """Messages usage from chat usage: `input_tokens` counts only the uncached part."""
    if not isinstance(usage, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    prompt = _int(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return {
        "input_tokens": max(prompt - cached, 0),
        "cache_read_input_tokens": cached,
        "output_tokens": _int(usage.get("completion_tokens")),
    }


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def tool_input(arguments: object) -> dict[str, Any]:
    """A tool_use `input` (always an object) from chat `arguments` (a JSON string)."""
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {"value": value}


def to_message(body: bytes) -> bytes:
    """A `type: "message"` for a whole `chat.completion` (first choice)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    choices = obj.get("choices") if isinstance(obj, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return body
    choice = choices[0]
    msg = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    if isinstance(msg.get("content"), str) and msg["content"]:
        content.append({"type": "text", "text": msg["content"]})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": fn.get("name", ""),
                "input": tool_input(fn.get("arguments")),
            }
        )
    return orjson.dumps(
        {
            "id": obj.get("id", ""),
            "type": "message",
            "role": "assistant",
            "model": obj.get("model", ""),
            "content": content,
            "stop_reason": stop_reason(choice.get("finish_reason")),
            "stop_sequence": None,
            "usage": messages_usage(obj.get("usage")),
        }
    )


def error_to_anthropic(status: int, body: bytes) -> bytes:
    """A Messages error body for an OpenAI-shaped upstream error (message kept)."""
    message = "The upstream answered with an error."
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        message = err["message"]
    return anthropic_error(status, message)
