"""OpenAI wire format for the fake provider: request checks, JSON bodies and SSE events."""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from dataclasses import dataclass, replace

import orjson

DONE = b"data: [DONE]\n\n"
_DEPLOYMENT = re.compile(r"/deployments/([^/]+)/")  # Azure-style paths carry the model

_INVALID_JSON = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)"
)
_STREAM_OPTIONS = "The 'stream_options' parameter is only allowed when 'stream' is enabled."

# status -> (type, code, message) of the default error body, as OpenAI sends them.
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (fake)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (fake)."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden (fake)."),
    404: ("invalid_request_error", "model_not_found", "The model `{model}` does not exist."),
    408: ("invalid_request_error", "timeout", "Request timed out (fake)."),
    409: ("invalid_request_error", "conflict", "Conflict (fake)."),
    422: ("invalid_request_error", None, "Unprocessable entity (fake)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for {model} (fake)."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
    529: ("server_error", "overloaded", "The server is overloaded (fake)."),
}


class Invalid(ValueError):
    """A request the provider refuses before answering: status plus the exact error body."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(body.decode("utf-8", "replace"))
        self.status = status
        self.body = body


@dataclass(frozen=True, slots=True)
class Events:
    """A stream: events sent at once after TTFT, content events (paced), closing events."""

    head: tuple[bytes, ...]
    content: tuple[bytes, ...]
    tail: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Generation:
    """The fields of a chat or legacy completion request that shape the answer."""

    model: str
    stream: bool
    include_usage: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """What one answer carries: id, echoed model, content pieces, usage, timestamps."""

    rid: str
    model: str
    pieces: tuple[str, ...]
    prompt_tokens: int
    created: int = 0
    include_usage: bool = False
    cached_tokens: int = 0
    tool: str | None = None


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """The inputs (as hash keys) and the encoding an embeddings request asks for."""

    model: str
    keys: tuple[bytes, ...]
    base64: bool
    dimensions: int


def error(
    message: str,
    *,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    """An OpenAI error body: all four keys, always."""
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def default_error(status: int, model: str = "") -> bytes:
    """The body a real OpenAI endpoint would send with this status (3xx: empty)."""
    if status < 400:
        return b""
    fallback = ("server_error", None, "Upstream error (fake).")
    kind, code, message = _ERRORS.get(status, fallback if status >= 500 else _ERRORS[400])
    return error(message.replace("{model}", model or "unknown"), kind=kind, code=code)


def _invalid(message: str, param: str | None = None, code: str | None = None) -> Invalid:
    return Invalid(400, error(message, param=param, code=code))


def parse_object(body: bytes) -> dict[str, object]:
    """The request body as a JSON object, or Invalid."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _invalid(_INVALID_JSON) from None
    if not isinstance(obj, dict):
        raise _invalid(_INVALID_JSON)
    return obj


def _model(obj: dict[str, object], path_model: str | None) -> str:
    model = obj.get("model", path_model)
    if model is None:
        raise _invalid("you must provide a model parameter")
    if not isinstance(model, str):
        raise _invalid("Invalid type for 'model': expected a string.", "model", "invalid_type")
    return model


def _generation(obj: dict[str, object], path_model: str | None) -> Generation:
    model = _model(obj, path_model)
    stream = obj.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _invalid("Invalid type for 'stream': expected a boolean.", "stream", "invalid_type")
    options = obj.get("stream_options")
    if options is not None and not stream:
        raise _invalid(_STREAM_OPTIONS, "stream_options")
    if options is not None and not isinstance(options, dict):
        raise _invalid(
            "Invalid type for 'stream_options': expected an object.",
            "stream_options",
            "invalid_type",
        )
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return Generation(model=model, stream=stream, include_usage=include_usage)


def parse_chat(body: bytes, path_model: str | None = None) -> Generation:
    """Check a chat completions request the way OpenAI does (the fields the fake reads)."""
    obj = parse_object(body)
    messages = obj.get("messages")
    if messages is None:
        raise _invalid(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    if not isinstance(messages, list):
        raise _invalid(
            "Invalid type for 'messages': expected an array.", "messages", "invalid_type"
        )
    if not messages:
        raise _invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            "messages",
            "empty_array",
        )
    return _generation(obj, path_model)


def parse_completion(body: bytes, path_model: str | None = None) -> Generation:
    """Check a legacy completions request."""
    return _generation(parse_object(body), path_model)


def parse_embeddings(body: bytes, path_model: str | None = None) -> EmbeddingRequest:
    """Check an embeddings request; each input becomes a key for a deterministic vector."""
    obj = parse_object(body)
    model = _model(obj, path_model)
    raw = obj.get("input")
    keys: list[bytes]
    if raw is None:
        raise _invalid(
            "Missing required parameter: 'input'.", "input", "missing_required_parameter"
        )
    if isinstance(raw, str):
        keys = [raw.encode()]
    elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        keys = [orjson.dumps(raw)]
    elif isinstance(raw, list) and raw and all(isinstance(x, str | list) for x in raw):
        keys = [x.encode() if isinstance(x, str) else orjson.dumps(x) for x in raw]
    else:
        raise _invalid("'$.input' is invalid.", "input", "invalid_value")
    encoding = obj.get("encoding_format", "float")
    if encoding not in ("float", "base64", None):
        raise _invalid(f"Invalid value for 'encoding_format': {encoding!r}.", "encoding_format")
    dimensions = obj.get("dimensions", 8)
    if isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1:
        raise _invalid("Invalid value for 'dimensions'.", "dimensions", "invalid_value")
    return EmbeddingRequest(
        model=model, keys=tuple(keys), base64=encoding == "base64", dimensions=min(dimensions, 4096)
    )


def _usage(p: int, c: int) -> dict[str, int]:
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def chat_json(r: Reply) -> bytes:
    """A `chat.completion` object with every required key and full usage."""
    usage: dict[str, object] = dict(_usage(r.prompt_tokens, len(r.pieces)))
    usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
    usage["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0}
    text = "".join(r.pieces)
    message: dict[str, object] = {
        "role": "assistant",
        "content": text,
        "refusal": None,
        "annotations": [],
    }
    finish = "stop"
    if r.tool is not None:
        fn = {"name": r.tool, "arguments": text}
        call = {"id": f"call_{r.rid}", "type": "function", "function": fn}
        message["content"], message["tool_calls"], finish = None, [call], "tool_calls"
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
    return orjson.dumps(
        {
            "id": f"chatcmpl-{r.rid}",
            "object": "chat.completion",
            "created": r.created,
            "model": r.model,
            "choices": [choice],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        }
    )


def _frame(r: Reply, obj_id: str, obj: str) -> tuple[bytes, bytes]:
    # Every chunk shares this prefix and end, so they are serialised once per request.
    head = orjson.dumps({"id": obj_id, "object": obj, "created": r.created, "model": r.model})
    end = b',"usage":null}\n\n' if r.include_usage else b"}\n\n"
    return b"data: " + head[:-1] + b',"choices":', end


def _tail(r: Reply, prefix: bytes, finish: bytes) -> tuple[bytes, ...]:
    if not r.include_usage:
        return (finish, DONE)
    usage = orjson.dumps(_usage(r.prompt_tokens, len(r.pieces)))
    return (finish, prefix + b'[],"usage":' + usage + b"}\n\n", DONE)


def chat_events(r: Reply) -> Events:
    """`chat.completion.chunk` events: role chunk, one per piece, finish, [usage], [DONE]."""
    prefix, end = _frame(r, f"chatcmpl-{r.rid}", "chat.completion.chunk")
    close = b',"logprobs":null,"finish_reason":null}]' + end
    role = prefix + b'[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}' + close
    if r.tool is None:
        content = tuple(
            prefix + b'[{"index":0,"delta":{"content":' + orjson.dumps(p) + b"}" + close
            for p in r.pieces
        )
    else:
        calls: list[dict[str, object]] = [
            {"index": 0, "function": {"arguments": p}} for p in r.pieces
        ]
        if calls:  # the first fragment names the call
            name = {"name": r.tool, "arguments": r.pieces[0]}
            calls[0] = {"index": 0, "id": f"call_{r.rid}", "type": "function", "function": name}
        content = tuple(
            prefix + b'[{"index":0,"delta":{"tool_calls":' + orjson.dumps([c]) + b"}" + close
            for c in calls
        )
    reason = b'"stop"' if r.tool is None else b'"tool_calls"'
    finish = (
        prefix + b'[{"index":0,"delta":{},"logprobs":null,"finish_reason":' + reason + b"}]" + end
    )
    return Events((role,), content, _tail(r, prefix, finish))


def completion_json(r: Reply) -> bytes:
    """A legacy `text_completion` object."""
    choice = {"text": "".join(r.pieces), "index": 0, "logprobs": None, "finish_reason": "stop"}
    return orjson.dumps(
        {
            "id": f"cmpl-{r.rid}",
            "object": "text_completion",
            "created": r.created,
            "model": r.model,
            "choices": [choice],
            "usage": _usage(r.prompt_tokens, len(r.pieces)),
        }
    )


def completion_events(r: Reply) -> Events:
    """Legacy completion stream: same framing as chat, `text` instead of `delta`."""
    prefix, end = _frame(r, f"cmpl-{r.rid}", "text_completion")
    close = b',"index":0,"logprobs":null,"finish_reason":null}]' + end
    content = tuple(prefix + b'[{"text":' + orjson.dumps(p) + close for p in r.pieces)
    finish = prefix + b'[{"text":"","index":0,"logprobs":null,"finish_reason":"stop"}]' + end
    return Events((), content, _tail(r, prefix, finish))


def embedding_vector(key: bytes, dimensions: int) -> list[float]:
    """A deterministic vector; every value is exact in float32, so both encodings agree."""
    return [(b - 127.5) / 128.0 for b in hashlib.shake_256(key).digest(dimensions)]


def embeddings_json(req: EmbeddingRequest, prompt_tokens: int) -> bytes:
    """An embeddings list: float lists, or little-endian float32 in base64 strings."""
    data: list[dict[str, object]] = []
    for index, key in enumerate(req.keys):
        vector = embedding_vector(key, req.dimensions)
        embedding: object = vector
        if req.base64:
            packed = struct.pack(f"<{len(vector)}f", *vector)
            embedding = base64.b64encode(packed).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return orjson.dumps({"object": "list", "data": data, "model": req.model, "usage": usage})


def model_json(model: str, created: int) -> dict[str, object]:
    """One `Model` object."""
    return {"id": model, "object": "model", "created": created, "owned_by": "fake"}


def models_json(models: tuple[str, ...], created: int) -> bytes:
    """The `GET /v1/models` list."""
    return orjson.dumps({"object": "list", "data": [model_json(m, created) for m in models]})


def peek_model(body: bytes) -> str:
    """The request's `model`, or "" (for error messages)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    model = obj.get("model") if isinstance(obj, dict) else None
    return model if isinstance(model, str) else ""


def answer(
    method: str, path: str, body: bytes, base: Reply, models: tuple[str, ...]
) -> bytes | Events:
    """The JSON body or the stream for one request, or Invalid (400, unknown URL 404).

    `base` carries everything but what the request decides (model, include_usage).
    """
    match = _DEPLOYMENT.search(path)
    path_model = match.group(1) if match else None
    if method == "POST" and path.endswith("/completions"):
        chat = path.endswith("/chat/completions")
        gen = (parse_chat if chat else parse_completion)(body, path_model)
        r = replace(base, model=gen.model, include_usage=gen.include_usage)
        if gen.stream:
            return chat_events(r) if chat else completion_events(r)
        return chat_json(r) if chat else completion_json(r)
    if method == "POST" and path.endswith("/embeddings"):
        return embeddings_json(parse_embeddings(body, path_model), base.prompt_tokens)
    if method == "GET" and path.endswith("/models"):
        return models_json(models, base.created)
    if method == "GET" and "/models/" in path:
        return orjson.dumps(model_json(path.rsplit("/", 1)[1], base.created))
    raise Invalid(404, error(f"Invalid URL ({method} {path})"))
