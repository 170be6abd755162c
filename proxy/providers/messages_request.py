"""Anthropic Messages request bodies turned into OpenAI chat request bodies."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.errors import bad_request

_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_KEPT = ("temperature", "top_p", "stream")
"""Fields spelled the same in both dialects; `top_k`, `thinking` and the like have no chat
equivalent and are dropped."""


def to_chat(body: bytes, model: str | None, ask_usage: bool) -> bytes:
    """The chat body for a Messages body; `ask_usage` adds `stream_options.include_usage`."""
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.") from None
    out: dict[str, Any] = {"model": model or req.get("model"), "messages": _messages(req)}
    limit = req.get("max_tokens")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        out["max_tokens"] = limit
    for key in _KEPT:
        if req.get(key) is not None:
            out[key] = req[key]
    stops = req.get("stop_sequences")
    if isinstance(stops, list) and stops:
        out["stop"] = stops
    meta = req.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("user_id"), str):
        out["user"] = meta["user_id"]
    tools = req.get("tools")
    if isinstance(tools, list) and tools:
        out["tools"] = [_tool(t) for t in tools]
        _tool_choice(req.get("tool_choice"), out)
    if ask_usage and out.get("stream") is True:
        out["stream_options"] = {"include_usage": True}
    return orjson.dumps(out)


def _messages(req: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = _text_of(req.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    raw = req.get("messages")
    if not isinstance(raw, list) or not raw:
        raise bad_request("`messages` must be a non-empty array.", "messages")
    for i, msg in enumerate(raw):
        if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
            raise bad_request(f"messages[{i}] must be a user or assistant message.", "messages")
        if msg["role"] == "user":
            messages.extend(_user(msg.get("content"), i))
        else:
            messages.append(_assistant(msg.get("content"), i))
    return messages


def _text_of(content: object, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "\n".join(
            b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text"
        )
    raise bad_request(f"`{where}` must be a string or an array of text blocks.", where)


def _user(content: object, i: int) -> list[dict[str, Any]]:
    """Tool results become `tool` messages (first, as chat wants them); the rest one user turn."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise bad_request(f"messages[{i}].content must be a string or an array.", "messages")
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id", ""),
                    "content": _text_of(block.get("content"), "tool_result.content"),
                }
            )
        elif kind == "text":
            parts.append({"type": "text", "text": block.get("text", "")})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, i)}})
        else:
            raise bad_request(
                f"messages[{i}] content block {kind!r} is not supported by this route's upstream.",
                "messages",
            )
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        text = "".join(p["text"] for p in parts) if only_text and len(parts) == 1 else None
        out.append({"role": "user", "content": text if text is not None else parts})
    return out


def _image_url(block: dict[str, Any], i: int) -> str:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        return f"data:{source.get('media_type', '')};base64,{source.get('data', '')}"
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return str(source["url"])
    raise bad_request(f"messages[{i}] image source must be base64 or url.", "messages")


def _assistant(content: object, i: int) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise bad_request(f"messages[{i}].content must be a string or an array.", "messages")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text", ""))
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
        # thinking / redacted_thinking blocks have no chat equivalent: dropped.
    out: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        out["tool_calls"] = calls
    return out


def _tool(tool: object) -> dict[str, Any]:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise bad_request("Each tool needs a `name`.", "tools")
    fn: dict[str, Any] = {
        "name": tool["name"],
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: object, out: dict[str, Any]) -> None:
    if not isinstance(choice, dict):
        return
    kind = choice.get("type")
    if kind in _TOOL_CHOICES:
        out["tool_choice"] = _TOOL_CHOICES[kind]
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
