"""Anthropic Messages wire format for the fake provider: checks, JSON bodies, SSE events."""

from __future__ import annotations

from dataclasses import dataclass, replace

import orjson

from proxy.fake.openai_dialect import Events, Invalid, Reply

# status -> error.type, from Anthropic's error docs (other 4xx: invalid_request_error).
_ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_MESSAGES: dict[str, str] = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit (fake)",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "not_found_error": "model: {model}",
}


@dataclass(frozen=True, slots=True)
class MessagesRequest:
    """The fields of a Messages request that shape the answer."""

    model: str
    stream: bool


def error(kind: str, message: str, request_id: str) -> bytes:
    """An Anthropic error body (`request_id` repeats the `request-id` header)."""
    return orjson.dumps(
        {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    )


def default_error(status: int, request_id: str, model: str = "") -> bytes:
    """The body the Messages API sends with this status (3xx: empty)."""
    if status < 400:
        return b""
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    message = _MESSAGES.get(kind, f"Error {status} (fake)").replace("{model}", model or "unknown")
    return error(kind, message, request_id)


def _invalid(message: str, request_id: str) -> Invalid:
    return Invalid(400, error("invalid_request_error", message, request_id))


def _object(body: bytes, request_id: str) -> dict[str, object]:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _invalid("There was an error parsing the body of your request", request_id) from None
    if not isinstance(obj, dict):
        raise _invalid("Input should be an object", request_id)
    return obj


def _model(obj: dict[str, object], request_id: str) -> str:
    model = obj.get("model")
    if model is None:
        raise _invalid("model: Field required", request_id)
    if not isinstance(model, str):
        raise _invalid("model: Input should be a valid string", request_id)
    return model


def _messages(obj: dict[str, object], request_id: str) -> None:
    messages = obj.get("messages")
    if messages is None:
        raise _invalid("messages: Field required", request_id)
    if not isinstance(messages, list):
        raise _invalid("messages: Input should be a valid list", request_id)


def parse_messages(body: bytes, request_id: str) -> MessagesRequest:
    """Check a `POST /v1/messages` body: model, messages and max_tokens are required."""
    obj = _object(body, request_id)
    model = _model(obj, request_id)
    _messages(obj, request_id)
    max_tokens = obj.get("max_tokens")
    if max_tokens is None:
        raise _invalid("max_tokens: Field required", request_id)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 0:
        raise _invalid("max_tokens: Input should be a valid integer >= 0", request_id)
    stream = obj.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream: Input should be a valid boolean", request_id)
    return MessagesRequest(model=model, stream=stream)


def parse_count_tokens(body: bytes, request_id: str) -> str:
    """Check a `POST /v1/messages/count_tokens` body (no max_tokens); return the model."""
    obj = _object(body, request_id)
    model = _model(obj, request_id)
    _messages(obj, request_id)
    return model


def count_tokens_json(input_tokens: int) -> bytes:
    """The count_tokens answer."""
    return orjson.dumps({"input_tokens": input_tokens})


def _usage(r: Reply, output_tokens: int) -> dict[str, object]:
    return {
        "input_tokens": r.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": r.cached_tokens,
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _tool_id(r: Reply) -> str:
    return f"toolu_{r.rid}"


def message_json(r: Reply) -> bytes:
    """A `type: "message"` object with one text block (or one tool_use block) and full usage."""
    text = "".join(r.pieces)
    if r.tool is not None:
        call = {"type": "tool_use", "id": _tool_id(r), "name": r.tool, "input": orjson.loads(text)}
        content: list[object] = [call]
    else:
        content = [{"type": "text", "text": text}] if text else []
    return orjson.dumps(
        {
            "id": f"msg_{r.rid}",
            "type": "message",
            "role": "assistant",
            "model": r.model,
            "content": content,
            "stop_reason": "end_turn" if r.tool is None else "tool_use",
            "stop_sequence": None,
            "usage": _usage(r, len(r.pieces)),
        }
    )


def _event(kind: bytes, data: bytes) -> bytes:
    return b"event: " + kind + b"\ndata: " + data + b"\n\n"


PING = _event(b"ping", b'{"type":"ping"}')
MESSAGE_STOP = _event(b"message_stop", b'{"type":"message_stop"}')
BLOCK_STOP = _event(b"content_block_stop", b'{"type":"content_block_stop","index":0}')
_BLOCK_START = _event(
    b"content_block_start",
    b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
)
_DELTA_OPEN = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"text_delta","text":'
)
_JSON_DELTA_OPEN = (
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
    b'"delta":{"type":"input_json_delta","partial_json":'
)


def message_events(r: Reply) -> Events:
    """message_start, content_block_start, ping, deltas, block stop, delta, stop."""
    start = {
        "type": "message_start",
        "message": {
            "id": f"msg_{r.rid}",
            "type": "message",
            "role": "assistant",
            "model": r.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(r, 1),
        },
    }
    delta = {
        "type": "message_delta",
        "delta": {
            "stop_reason": "end_turn" if r.tool is None else "tool_use",
            "stop_sequence": None,
        },
        "usage": {"output_tokens": len(r.pieces)},
    }
    if r.tool is None:
        block_start = _BLOCK_START
        content = tuple(_DELTA_OPEN + orjson.dumps(p) + b"}}\n\n" for p in r.pieces)
    else:
        block = {"type": "tool_use", "id": _tool_id(r), "name": r.tool, "input": {}}
        block_start = _event(
            b"content_block_start",
            orjson.dumps({"type": "content_block_start", "index": 0, "content_block": block}),
        )
        content = tuple(_JSON_DELTA_OPEN + orjson.dumps(p) + b"}}\n\n" for p in r.pieces)
    head = (_event(b"message_start", orjson.dumps(start)), block_start, PING)
    tail = (BLOCK_STOP, _event(b"message_delta", orjson.dumps(delta)), MESSAGE_STOP)
    return Events(head, content, tail)


def models_json(models: tuple[str, ...]) -> bytes:
    """The `GET /v1/models` page in Anthropic's shape."""
    data = [
        {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
        for m in models
    ]
    first, last = (models[0], models[-1]) if models else (None, None)
    return orjson.dumps({"data": data, "has_more": False, "first_id": first, "last_id": last})


def answer(
    method: str, path: str, body: bytes, base: Reply, models: tuple[str, ...]
) -> bytes | Events:
    """The JSON body or the stream for one request, or Invalid (400, unknown URL 404)."""
    if method == "POST" and path.endswith("/messages"):
        req = parse_messages(body, base.rid)
        r = replace(base, model=req.model)
        return message_events(r) if req.stream else message_json(r)
    if method == "POST" and path.endswith("/messages/count_tokens"):
        parse_count_tokens(body, base.rid)
        return count_tokens_json(base.prompt_tokens)
    if method == "GET" and path.endswith("/models"):
        return models_json(models)
    raise Invalid(404, error("not_found_error", "Not Found", base.rid))
