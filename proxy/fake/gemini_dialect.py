"""Gemini generateContent wire format for the fake provider: checks, JSON bodies, SSE events."""

from __future__ import annotations

import re
from dataclasses import replace

import orjson

from proxy.fake.openai_dialect import Events, Invalid, Reply

_PATH = re.compile(r"/models/([^/:]+):(generateContent|streamGenerateContent)$")
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    429: "Resource has been exhausted (e.g. check quota).",
    503: "The model is overloaded. Please try again later.",
}
# Gemini frames its SSE events with CRLF line ends.
_END = b"\r\n\r\n"


def error(status: int, message: str | None = None) -> bytes:
    """A Google API error body."""
    name = _STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    text = message or _MESSAGES.get(status, f"Error {status} (fake)")
    return orjson.dumps({"error": {"code": status, "message": text, "status": name}})


def _usage(r: Reply) -> dict[str, int]:
    out = len(r.pieces)
    return {
        "promptTokenCount": r.prompt_tokens,
        "candidatesTokenCount": out,
        "totalTokenCount": r.prompt_tokens + out,
        "cachedContentTokenCount": r.cached_tokens,
    }


def _candidate(parts: list[object], finish: bool) -> dict[str, object]:
    cand: dict[str, object] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = "STOP"
    return cand


def _parts(r: Reply) -> list[object]:
    text = "".join(r.pieces)
    if r.tool is not None:
        return [{"functionCall": {"name": r.tool, "args": orjson.loads(text)}}]
    return [{"text": text}]


def response_json(r: Reply) -> bytes:
    return orjson.dumps(
        {
            "candidates": [_candidate(_parts(r), finish=True)],
            "usageMetadata": _usage(r),
            "modelVersion": r.model,
            "responseId": r.rid,
        }
    )


def _chunk(r: Reply, parts: list[object], last: bool) -> bytes:
    obj: dict[str, object] = {
        "candidates": [_candidate(parts, finish=last)],
        "modelVersion": r.model,
        "responseId": r.rid,
    }
    if last:
        obj["usageMetadata"] = _usage(r)
    return b"data: " + orjson.dumps(obj) + _END


def response_events(r: Reply) -> Events:
    """One event per text piece (a function call comes whole); the last carries finishReason
    and usage. No end marker: the body just ends."""
    if r.tool is not None:
        return Events((), (_chunk(r, _parts(r), last=False),), (_chunk(r, [], last=True),))
    pieces = r.pieces or ("",)
    content = tuple(_chunk(r, [{"text": p}], last=False) for p in pieces[:-1])
    return Events((), content, (_chunk(r, [{"text": pieces[-1]}], last=True),))


def answer(
    method: str, path: str, body: bytes, base: Reply, models: tuple[str, ...]
) -> bytes | Events:
    """The JSON body or the stream for one request, or Invalid (400, unknown URL 404)."""
    match = _PATH.search(path)
    if method != "POST" or match is None:
        raise Invalid(404, error(404, f"Unknown path {path}"))
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Invalid(400, error(400, "Invalid JSON payload received.")) from None
    contents = obj.get("contents") if isinstance(obj, dict) else None
    if not isinstance(contents, list) or not contents:
        raise Invalid(
            400, error(400, "* GenerateContentRequest.contents: contents is not specified")
        )
    r = replace(base, model=match.group(1))
    return response_events(r) if match.group(2) == "streamGenerateContent" else response_json(r)
