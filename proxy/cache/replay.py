"""A cached chat answer in the other form: a JSON body as an SSE stream, a stream as JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from proxy.providers.openai_usage import drop_usage_events
from proxy.providers.sse import SSEParser, is_done

DONE = b"data: [DONE]\n\n"


def complete(chunks: Sequence[bytes]) -> bool:
    """A recorded stream that ended with OpenAI's `[DONE]` (an error event or a cut never does)."""
    tail = b""
    for chunk in reversed(chunks):  # the end may be cut into pieces of any size
        tail = chunk + tail
        if len(tail) >= 2 * len(DONE):
            break
    return tail.rstrip(b"\r\n ").endswith(b"data: [DONE]")


def _event(obj: object) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def to_stream(body: bytes, with_usage: bool) -> tuple[bytes, ...] | None:
    """A `chat.completion` body as the `chat.completion.chunk` events an upstream would send:
    per choice its message in one delta, then its finish reason; the usage chunk when the
    client asked for it; `[DONE]`. None when the body is not a chat completion."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list):
        return None
    head = {
        "id": data.get("id", ""),
        "object": "chat.completion.chunk",
        "created": data.get("created", 0),
        "model": data.get("model", ""),
    }
    if "system_fingerprint" in data:
        head["system_fingerprint"] = data["system_fingerprint"]
    out: list[bytes] = []
    for i, choice in enumerate(choices):
        if not isinstance(choice, dict):
            return None
        index = choice.get("index", i)
        message = choice.get("message")
        delta: dict[str, Any] = dict(message) if isinstance(message, dict) else {}
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            delta["tool_calls"] = [
                {"index": n, **c} if isinstance(c, dict) else c for n, c in enumerate(calls)
            ]
        part = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
        out.append(_event({**head, "choices": [part]}))
        end = {"index": index, "delta": {}, "logprobs": None}
        out.append(
            _event({**head, "choices": [{**end, "finish_reason": choice.get("finish_reason")}]})
        )
    usage = data.get("usage")
    if with_usage and isinstance(usage, dict):
        out.append(_event({**head, "choices": [], "usage": usage}))
    out.append(DONE)
    return tuple(out)


def adapt_usage(
    chunks: tuple[bytes, ...], had_usage: bool, wants_usage: bool, usage: bytes | None
) -> tuple[bytes, ...]:
    """A recorded stream for a client whose `include_usage` differs from the recording's: the
    usage-only chunk cut out (events re-cut one per chunk), or added before `[DONE]`."""
    if had_usage == wants_usage:
        return chunks
    if had_usage:
        whole = drop_usage_events(b"".join(chunks))
        return tuple(e + b"\n\n" for e in whole.split(b"\n\n") if e.strip())
    if usage is None or not chunks:
        return chunks
    head = _head(chunks)
    return (*chunks[:-1], _event({**head, "choices": [], "usage": orjson.loads(usage)}), chunks[-1])


def _head(chunks: Sequence[bytes]) -> dict[str, object]:
    for obj in _objects(chunks):
        return {k: obj[k] for k in ("id", "object", "created", "model") if k in obj}
    return {"object": "chat.completion.chunk"}


def _objects(chunks: Sequence[bytes]) -> list[dict[str, Any]]:
    parser = SSEParser()
    objs: list[dict[str, Any]] = []
    for chunk in chunks:
        for ev in parser.feed(chunk):
            if is_done(ev):
                continue
            try:
                obj = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                objs.append(obj)
    return objs


def to_body(chunks: Sequence[bytes]) -> bytes | None:
    """The `chat.completion` body a recorded chunk stream adds up to (content and tool-call
    arguments joined, the last finish reason and usage); None when it holds no chunk."""
    objs = _objects(chunks)
    if not objs:
        return None
    first = objs[0]
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for obj in objs:
        if isinstance(obj.get("usage"), dict):
            usage = obj["usage"]
        for part in obj.get("choices") or ():
            if isinstance(part, dict):
                _fold(choices.setdefault(int(part.get("index", 0)), {}), part)
    answer: dict[str, Any] = {
        "id": first.get("id", ""),
        "object": "chat.completion",
        "created": first.get("created", 0),
        "model": first.get("model", ""),
        "choices": [_choice(i, c) for i, c in sorted(choices.items())],
    }
    if "system_fingerprint" in first:
        answer["system_fingerprint"] = first["system_fingerprint"]
    if usage is not None:
        answer["usage"] = usage
    return orjson.dumps(answer)


def _fold(acc: dict[str, Any], part: dict[str, Any]) -> None:
    delta = part.get("delta")
    if isinstance(delta, dict):
        if isinstance(delta.get("role"), str):
            acc["role"] = delta["role"]
        if isinstance(delta.get("refusal"), str):
            acc["refusal"] = acc.get("refusal", "") + delta["refusal"]
        if isinstance(delta.get("content"), str):
            acc.setdefault("content", []).append(delta["content"])
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                _fold_call(acc.setdefault("tool_calls", {}), call)
    if part.get("finish_reason") is not None:
        acc["finish_reason"] = part["finish_reason"]


def _fold_call(calls: dict[int, dict[str, Any]], call: dict[str, Any]) -> None:
    c = calls.setdefault(int(call.get("index", len(calls))), {"function": {"arguments": []}})
    for name in ("id", "type"):
        if call.get(name):
            c[name] = call[name]
    fn = call.get("function")
    if isinstance(fn, dict):
        if fn.get("name"):
            c["function"]["name"] = fn["name"]
        if isinstance(fn.get("arguments"), str):
            c["function"]["arguments"].append(fn["arguments"])


def _choice(index: int, acc: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": acc.get("role", "assistant"),
        "content": "".join(acc["content"]) if "content" in acc else None,
    }
    if "refusal" in acc:
        message["refusal"] = acc["refusal"]
    if "tool_calls" in acc:
        message["tool_calls"] = [
            {
                "id": c.get("id", ""),
                "type": c.get("type", "function"),
                "function": {
                    "name": c["function"].get("name", ""),
                    "arguments": "".join(c["function"]["arguments"]),
                },
            }
            for _, c in sorted(acc["tool_calls"].items())
        ]
    return {
        "index": index,
        "message": message,
        "logprobs": None,
        "finish_reason": acc.get("finish_reason"),
    }
