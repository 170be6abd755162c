"""OpenAI chat request bodies turned into Anthropic Messages request bodies."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.errors import bad_request

DEFAULT_MAX_TOKENS = 4096
"""Messages requires `max_tokens`; an OpenAI client may leave it out (LiteLLM's default too)."""

_TOOL_CHOICES = {"auto": "auto", "required": "any", "none": "none"}
_KEPT = ("top_p", "top_k", "stream")
"""Fields spelled the same in both dialects; the rest are translated below or dropped
(logprobs, penalties, seed, response_format: Messages has no equivalent)."""


def to_messages(body: bytes, model: str | None) -> bytes:
    """The Messages body for an OpenAI chat body; a shape Messages cannot take is a 400."""
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.") from None
    out: dict[str, Any] = {"model": model or req["model"]}
    system, turns = _turns(req.get("messages"))
    if system:
        out["system"] = system
    out["messages"] = turns
    limit = req.get("max_completion_tokens", req.get("max_tokens"))
    out["max_tokens"] = limit if isinstance(limit, int) and limit >= 0 else DEFAULT_MAX_TOKENS
    n = req.get("n")
    if n not in (None, 1):
        raise bad_request("`n` other than 1 is not supported by this route's upstream.", "n")
    stop = req.get("stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        out["stop_sequences"] = stop
    temperature = req.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        out["temperature"] = min(max(float(temperature), 0.0), 1.0)  # Messages takes 0..1
    for key in _KEPT:
        if key in req and req[key] is not None:
            out[key] = req[key]
    user = req.get("user", req.get("safety_identifier"))
    if isinstance(user, str):
        out["metadata"] = {"user_id": user}
    tools = req.get("tools")
    if isinstance(tools, list) and tools:
        out["tools"] = [_tool(t) for t in tools]
    choice = _tool_choice(req.get("tool_choice"), req.get("parallel_tool_calls"))
    if choice is not None and "tools" in out:
        out["tool_choice"] = choice
    return orjson.dumps(out)


def _turns(messages: object) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System blocks (lifted from anywhere) and user/assistant turns, same roles merged."""
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty array.", "messages")
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise bad_request(f"messages[{i}] must be an object.", "messages")
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(msg.get("content"), i))
            continue
        role_out, blocks = _turn(role, msg, i)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role_out:
            prev = turns[-1]["content"]
            # Tool results lead a user turn: Messages wants them before any text.
            if role == "tool":
                at = sum(1 for b in prev if b["type"] == "tool_result")
                prev[at:at] = blocks
            else:
                prev.extend(blocks)
        else:
            turns.append({"role": role_out, "content": blocks})
    if not turns:
        raise bad_request("`messages` needs at least one user or assistant message.", "messages")
    return system, turns


def _turn(role: object, msg: dict[str, Any], i: int) -> tuple[str, list[dict[str, Any]]]:
    if role == "user":
        return "user", _blocks(msg.get("content"), i)
    if role == "assistant":
        return "assistant", _assistant_blocks(msg, i)
    if role == "tool":
        return "user", [_tool_result(msg, i)]
    raise bad_request(f"messages[{i}].role {role!r} is not supported.", "messages")


def _blocks(content: object, i: int) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise bad_request(f"messages[{i}].content must be a string or an array.", "messages")
    out: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            out.append(_image(part.get("image_url"), i))
        else:
            raise bad_request(
                f"messages[{i}].content part of type {kind!r} is not supported by this "
                "route's upstream.",
                "messages",
            )
    return out


def _image(spec: object, i: int) -> dict[str, Any]:
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str):
        raise bad_request(f"messages[{i}] image_url needs a url.", "messages")
    if url.startswith("data:"):
        head, sep, data = url[5:].partition(",")
        mime, _, encoding = head.partition(";")
        if not sep or encoding != "base64":
            raise bad_request(f"messages[{i}] image data URLs must be base64.", "messages")
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _assistant_blocks(msg: dict[str, Any], i: int) -> list[dict[str, Any]]:
    blocks = _blocks(msg.get("content"), i)
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id", ""),
                "name": fn.get("name", ""),
                "input": args if isinstance(args, dict) else {"value": args},
            }
        )
    return blocks


def _tool_result(msg: dict[str, Any], i: int) -> dict[str, Any]:
    content = msg.get("content")
    if isinstance(content, list):
        content = _blocks(content, i)
    return {
        "type": "tool_result",
        "tool_use_id": msg.get("tool_call_id", ""),
        "content": content if content is not None else "",
    }


def _tool(tool: object) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise bad_request("Each tool needs a `function` with a `name`.", "tools")
    out: dict[str, Any] = {
        "name": fn["name"],
        "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
    }
    if fn.get("description"):
        out["description"] = fn["description"]
    return out


def _tool_choice(choice: object, parallel: object) -> dict[str, Any] | None:
    out: dict[str, Any] | None = None
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        out = {"type": _TOOL_CHOICES[choice]}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            out = {"type": "tool", "name": name}
    if parallel is False:
        out = out or {"type": "auto"}
        if out["type"] != "none":
            out["disable_parallel_tool_use"] = True
    return out
