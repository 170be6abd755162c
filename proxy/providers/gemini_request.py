"""OpenAI chat request bodies turned into Gemini generateContent request bodies."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.core.errors import bad_request

_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
_GENERATION = (
    ("temperature", "temperature"),
    ("top_p", "topP"),
    ("presence_penalty", "presencePenalty"),
    ("frequency_penalty", "frequencyPenalty"),
    ("seed", "seed"),
)
"""Chat options with a generationConfig equivalent spelled differently."""


def to_gemini(body: bytes) -> bytes:
    """The generateContent body for a chat body (the model goes in the URL, not here)."""
    try:
        req = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.") from None
    system, contents = _contents(req.get("messages"))
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    config: dict[str, Any] = {}
    limit = req.get("max_completion_tokens", req.get("max_tokens"))
    if isinstance(limit, int) and not isinstance(limit, bool):
        config["maxOutputTokens"] = limit
    for name, key in _GENERATION:
        if req.get(name) is not None:
            config[key] = req[name]
    stop = req.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else stop
    n = req.get("n")
    if n not in (None, 1):
        raise bad_request("`n` other than 1 is not supported by this route's upstream.", "n")
    _response_format(req.get("response_format"), config)
    if config:
        out["generationConfig"] = config
    tools = req.get("tools")
    if isinstance(tools, list) and tools:
        out["tools"] = [{"functionDeclarations": [_declaration(t) for t in tools]}]
        mode = _tool_config(req.get("tool_choice"))
        if mode is not None:
            out["toolConfig"] = {"functionCallingConfig": mode}
    return orjson.dumps(out)


def _response_format(fmt: object, config: dict[str, Any]) -> None:
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema


def _contents(messages: object) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if not isinstance(messages, list) or not messages:
        raise bad_request("`messages` must be a non-empty array.", "messages")
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    """tool_call_id -> function name: a functionResponse must name its function."""
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise bad_request(f"messages[{i}] must be an object.", "messages")
        role = msg.get("role")
        if role in ("system", "developer"):
            system.extend(_parts(msg.get("content"), i))
            continue
        if role == "user":
            turn, parts = "user", _parts(msg.get("content"), i)
        elif role == "assistant":
            turn, parts = "model", _model_parts(msg, i, names)
        elif role == "tool":
            turn, parts = "user", [_function_response(msg, names)]
        else:
            raise bad_request(f"messages[{i}].role {role!r} is not supported.", "messages")
        if not parts:
            continue
        if contents and contents[-1]["role"] == turn:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": turn, "parts": parts})
    if not contents:
        raise bad_request("`messages` needs at least one user or assistant message.", "messages")
    return system, contents


def _parts(content: object, i: int) -> list[dict[str, Any]]:
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
    if not isinstance(url, str):
        raise bad_request(f"messages[{i}] image_url needs a url.", "messages")
    if url.startswith("data:"):
        head, sep, data = url[5:].partition(",")
        mime, _, encoding = head.partition(";")
        if not sep or encoding != "base64":
            raise bad_request(f"messages[{i}] image data URLs must be base64.", "messages")
        return {"inlineData": {"mimeType": mime, "data": data}}
    return {"fileData": {"mimeType": "image/*", "fileUri": url}}


def _model_parts(msg: dict[str, Any], i: int, names: dict[str, str]) -> list[dict[str, Any]]:
    parts = _parts(msg.get("content"), i)
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        name = fn.get("name", "")
        names[call.get("id", "")] = name
        try:
            args = orjson.loads(fn.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            args = {}
        parts.append(
            {"functionCall": {"name": name, "args": args if isinstance(args, dict) else {}}}
        )
    return parts


def _function_response(msg: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    content = msg.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    try:
        value = orjson.loads(content) if isinstance(content, str) else content
    except orjson.JSONDecodeError:
        value = content
    response = value if isinstance(value, dict) else {"content": value}
    name = names.get(msg.get("tool_call_id", ""), "")
    return {"functionResponse": {"name": name, "response": response}}


def _declaration(tool: object) -> dict[str, Any]:
    fn = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise bad_request("Each tool needs a `function` with a `name`.", "tools")
    out: dict[str, Any] = {"name": fn["name"]}
    if fn.get("description"):
        out["description"] = fn["description"]
    if fn.get("parameters"):
        out["parametersJsonSchema"] = fn["parameters"]  # full JSON Schema, not the subset
    return out


def _tool_config(choice: object) -> dict[str, Any] | None:
    if isinstance(choice, str) and choice in _MODES:
        return {"mode": _MODES[choice]}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if isinstance(name, str):
            return {"mode": "ANY", "allowedFunctionNames": [name]}
    return None
