"""Error events that open a 200 stream, read as the HTTP status they stand for (pre-commit)."""

from __future__ import annotations

import orjson

ANTHROPIC_STATUSES = {
    "overloaded_error": 529,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "authentication_error": 401,
    "permission_error": 403,
}
"""Messages error types a stream can open with, as the status the same error has outside one."""

_HEAD = 4096
"""Only the start of the first chunk is looked at: an opening error event is short."""


def messages_stream_status(first: bytes) -> int | None:
    """A Messages stream whose first event is `event: error`: its status; else None."""
    head = first[:_HEAD].lstrip()
    if not head.startswith(b"event: error") and not head.startswith(b"event:error"):
        return None
    at = head.find(b"data:")
    end = head.find(b"\n", at)
    try:
        obj = orjson.loads(head[at + 5 : end if end > 0 else None])
    except orjson.JSONDecodeError:
        return 500
    err = obj.get("error") if isinstance(obj, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    return ANTHROPIC_STATUSES.get(kind, 500) if isinstance(kind, str) else 500


def google_stream_status(first: bytes) -> int | None:
    """A Gemini stream whose first event is an error object: its `code`; else None."""
    head = first[:_HEAD].lstrip()
    if not head.startswith(b"data:") or b'"error"' not in head[:64]:
        return None
    end = head.find(b"\n")
    try:
        obj = orjson.loads(head[5 : end if end > 0 else None])
    except orjson.JSONDecodeError:
        return 500
    if isinstance(obj, list) and obj:
        obj = obj[0]
    err = obj.get("error") if isinstance(obj, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    return code if isinstance(code, int) and 400 <= code <= 599 else 500
