"""Gemini generateContent answers (JSON, usage, errors) turned into OpenAI chat answers."""

from __future__ import annotations

import time
from typing import Any

import orjson

from proxy.core.errors import error_body
from proxy.core.exchange import Usage

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "OTHER",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "IMAGE_OTHER",
        "NO_IMAGE",
    }
)


def finish_reason(reason: object, called: bool) -> str:
    """Gemini says STOP even for function-call turns: calls make it `tool_calls`."""
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if called else "stop"


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def openai_usage(meta: object) -> dict[str, Any] | None:
    """Chat usage from usageMetadata: thinking tokens count as completion tokens."""
    if not isinstance(meta, dict):
        return None
    prompt = _int(meta, "promptTokenCount") + _int(meta, "toolUsePromptTokenCount")
    thoughts = _int(meta, "thoughtsTokenCount")
    completion = _int(meta, "candidatesTokenCount") + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": _int(meta, "cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


def usage_of(body: bytes) -> Usage | None:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    u = openai_usage(obj.get("usageMetadata")) if isinstance(obj, dict) else None
    return None if u is None else Usage.of_chat(u)


def calls_of(parts: list[Any], response_id: str, first: int) -> list[dict[str, Any]]:
    """functionCall parts as chat tool calls; Gemini may give no id, so one is made up."""
    calls: list[dict[str, Any]] = []
    for part in parts:
        call = part.get("functionCall") if isinstance(part, dict) else None
        if isinstance(call, dict):
            n = first + len(calls)
            calls.append(
                {
                    "id": call.get("id") or f"call_{response_id}_{n}",
                    "type": "function",
                    "function": {
                        "name": call.get("name", ""),
                        "arguments": orjson.dumps(call.get("args") or {}).decode(),
                    },
                }
            )
    return calls


def text_of(parts: list[Any]) -> str:
    """The answer's text: text parts that are not thoughts."""
    return "".join(
        p["text"] for p in parts if isinstance(p, dict) and "text" in p and not p.get("thought")
    )


def to_chat(body: bytes) -> bytes:
    """A `chat.completion` for a whole generateContent answer (first candidate)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(obj, dict):
        return body
    rid = str(obj.get("responseId", ""))
    candidates = obj.get("candidates") or [{}]
    cand = candidates[0] if isinstance(candidates[0], dict) else {}
    parts = (cand.get("content") or {}).get("parts") or []
    calls = calls_of(parts, rid, 0)
    text = text_of(parts)
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    reason = cand.get("finishReason") or (obj.get("promptFeedback") or {}).get("blockReason")
    out: dict[str, Any] = {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": obj.get("modelVersion", ""),
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason(reason, bool(calls)),
            }
        ],
    }
    usage = openai_usage(obj.get("usageMetadata"))
    if usage is not None:
        out["usage"] = usage
    return orjson.dumps(out)


def error_to_openai(body: bytes) -> bytes:
    """An OpenAI-shaped error for a Google API error (`{"error":{code,message,status}}`, or a list
    of one)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, list) and obj:
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        status = err.get("status") if isinstance(err.get("status"), str) else None
        return error_body(err["message"], "invalid_request_error", status)
    return error_body("The upstream answered with an error.", "api_error", None)
