"""OpenAI chat request bodies turned into Bedrock Converse request bodies."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from proxy.core.errors import bad_request

_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/gif": "gif", "image/webp": "webp"}


def to_converse(body: bytes) -> bytes:
    """The Converse body for a chat body (the model id goes in the URL)."""
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.") from None
    system, messages = _messages(req.get("messages"))
    out: dict[str, Any] = {"messages": messages}
    if system:
        out["system"] = system
    config: dict[str, Any] = {}
    limit = req.get("max_completion_tokens", req.get("max_tokens"))
    if isinstance(limit, int) and not isinstance(limit, bool):
        config["maxTokens"] = limit
    for name, key in (("temperature", "temperature"), ("top_p", "topP")):
        if req.get(name) is not None:
            config[key] = req[name]
    stop = req.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else stop
    if config:
        out["inferenceConfig"] = config
    if req.get("n") not in (None, 1):
        raise bad_request("`n` other than 1 is not supported by this route's upstream.", "n")
    tools = req.get("tools")
    if isinstance(tools, list) and tools:
        out["toolConfig"] = {"tools": [_tool(t) for t in tools]}
        choice = _tool_choice(req.get("tool_choice"))
        if choice is not None:
            out["toolConfig"]["toolChoice"] = choice
    return orjson.dumps(out)


def _messages(messages: object) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty array.", "messages")
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise bad_request(f"messages[{i}] must be an object.", "messages")
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(msg.get("content"), i))
            continue
        turn, blocks = _turn(role, msg, i)
        if not blocks:
            continue
        if out and out[-1]["role"] == turn:  # Converse wants turns to alternate
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": turn, "content": blocks})
    if not out:
        raise bad_request("`messages` needs at least one user or assistant message.", "messages")
    return system, out


def _turn(role: object, msg: dict[str, Any], i: int) -> tuple[str, list[dict[str, Any]]]:
    if role == "user":
        return "user", _blocks(msg.get("content"), i)
    if role == "assistant":
        blocks = _blocks(msg.get("content"), i)
        for call in msg.get("tool_calls") or ():
            fn = call.get("function") or {}
            try:
                args = orjson.loads(fn.get("arguments") or "{}")
            except orjson.JSONDecodeError:
                args = {}
            use = {"toolUseId": call.get("id", ""), "name": fn.get("name", ""), "input": args}
            blocks.append({"toolUse": use})
        return "assistant", blocks
    if role == "tool":
        content = msg.get("content")
        text = content if isinstance(content, str) else orjson.dumps(content).decode()
        result = {"toolUseId": msg.get("tool_call_id", ""), "content": [{"text": text}]}
        return "user", [{"toolResult": result}]
    raise bad_request(f"messages[{i}].role {role!r} is not supported.", "messages")


def _blocks(content: object, i: int) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"text": content}] if content else []
    if not isinstance(content, list):
        raise bad_request(f"messages[{i}].content must be a string or an array.", "messages")
    out: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            out.append({"text": part.get("text", "")})
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
    if not isinstance(url, str) or not url.startswith("data:"):
        raise bad_request(f"messages[{i}]: Bedrock takes images as base64 data URLs.", "messages")
    head, _, data = url[5:].partition(",")
    mime, _, encoding = head.partition(";")
    if encoding != "base64" or mime not in _FORMATS:
        raise bad_request(
            f"messages[{i}]: image must be base64 png, jpeg, gif or webp.", "messages"
        )
    try:
        base64.b64decode(data, validate=True)
    except ValueError:
        raise bad_request(f"messages[{i}]: image data is not valid base64.", "messages") from None
    return {"image": {"format": _FORMATS[mime], "source": {"bytes": data}}}


def _tool(tool: object) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise bad_request("Each tool needs a `function` with a `name`.", "tools")
    schema = fn.get("parameters") or {"type": "object", "properties": {}}
    spec: dict[str, Any] = {"name": fn["name"], "inputSchema": {"json": schema}}
    if fn.get("description"):
        spec["description"] = fn["description"]
    return {"toolSpec": spec}


def _tool_choice(choice: object) -> dict[str, Any] | None:
    if choice == "auto":
        return {"auto": {}}
    if choice == "required":
        return {"any": {}}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            return {"tool": {"name": name}}
    return None
