"""OpenAI request bodies: peek at the few fields the gateway needs, rewrite them in place."""

from __future__ import annotations

import orjson

from proxy.core.errors import bad_request
from proxy.core.exchange import Peek


def peek(body: bytes) -> Peek:
    """Validate that the body is a JSON object with a string `model`; read `stream`."""
    return peek_body(body)[0]


def peek_body(body: bytes) -> tuple[Peek, bytes]:
    """The peek, and the body to forward: the client's bytes, or, when a routing key may be
    given twice, the body re-encoded from what the gateway read (the last copy of each key).

    Parsers disagree on which copy of a duplicated key wins; the upstream must act on the
    `model` and `stream` the gateway routed on, not on another copy."""
    if not body:
        raise bad_request("The request body is empty; expected a JSON object.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("`model` is required and must be a non-empty string.", "model")
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad_request("`stream` must be a boolean.", "stream")
    options = data.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 0
    ):
        raise bad_request("`max_tokens` must be a non-negative integer.", "max_tokens")
    pk = Peek(
        model=model,
        stream=stream,
        include_usage=include_usage,
        has_stream_options=options is not None,
        max_tokens=max_tokens,
    )
    return pk, orjson.dumps(data) if _may_repeat_a_routing_key(body, data) else body


_MODEL_KEY = b'"model"'
_STREAM_KEYS = b'"stream'
"""The text of `"stream"` and of `"stream_options"`, counted in one pass."""


def _may_repeat_a_routing_key(body: bytes, data: dict[str, object]) -> bool:
    """False when the text of `"model"`, `"stream"` and `"stream_options"` appears no more
    often than the parsed object has those keys (then none is duplicated); True leaves it open
    (a duplicate, a nested key, or a string value that reads the same). Two passes over the
    bytes, at memchr speed."""
    if body.count(_MODEL_KEY) > 1:
        return True
    return body.count(_STREAM_KEYS) > ("stream" in data) + ("stream_options" in data)


def rewrite_model(body: bytes, old: str, new: str) -> bytes:
    """Replace the top-level model value without re-encoding the rest of the body.

    Inside JSON strings a quote is always escaped, so a bare `"model"` in the bytes is a key.
    When it occurs once and is followed by exactly the encoding of `old`, splice; otherwise
    (nested "model" keys, unusual escapes) fall back to a full re-encode.
    """
    if old == new:
        return body
    at = body.find(_MODEL_KEY)
    if at >= 0 and body.find(_MODEL_KEY, at + 7) < 0:
        i = at + 7
        n = len(body)
        while i < n and body[i] in b" \t\r\n":
            i += 1
        if i < n and body[i] == 58:  # ":"
            i += 1
            while i < n and body[i] in b" \t\r\n":
                i += 1
            old_json = orjson.dumps(old)
            if body.startswith(old_json, i):
                out = body[:i] + orjson.dumps(new) + body[i + len(old_json) :]
                # A top-level key spelled with escapes ("mod\u0065l") would leave the only
                # plain "model" nested; only then is the splice checked by a full parse.
                if body.find(b"\\u", 0, at) < 0 or _model_of(out) == new:
                    return out
    data = orjson.loads(body)
    data["model"] = new
    return orjson.dumps(data)


_USAGE_OPTION = b'"stream_options":{"include_usage":true}'


def ask_for_usage(body: bytes, has_stream_options: bool) -> bytes:
    """Add `stream_options.include_usage` so a stream reports its tokens (for metering).

    Without stream_options in the body the option is spliced before the closing brace;
    otherwise the object is merged through a re-encode (rare: include_obfuscation and co).
    """
    if not has_stream_options:
        end = body.rstrip().rfind(b"}")
        if end > 0:
            head = body[:end].rstrip()
            sep = b"" if head.endswith(b"{") else b","
            return head + sep + _USAGE_OPTION + body[end:]
    data = orjson.loads(body)
    options = data.get("stream_options")
    data["stream_options"] = {
        **(options if isinstance(options, dict) else {}),
        "include_usage": True,
    }
    return orjson.dumps(data)


def _model_of(body: bytes) -> object:
    data = orjson.loads(body)
    return data.get("model") if isinstance(data, dict) else None
