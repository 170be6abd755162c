"""Error events that open a 200 stream, read as the HTTP status they stand for (pre-commit)."""

from __future__ import annotations

import re

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

OPENAI_STATUSES = {
    "rate_limit_exceeded": 429,
    "rate_limit_error": 429,
    "overloaded": 503,
    "overloaded_error": 529,
    "server_overloaded": 503,
    "service_unavailable": 503,
    "timeout": 504,
}
"""`type`/`code` strings of an OpenAI-compatible error object, as a status (others: 500)."""

_HEAD = 4096
"""Only the start of an opening error is looked at: it is short."""
_OPENING = 64 * 1024
"""How far the events before the first content are searched (message_start, pings)."""
_MESSAGES_ERROR = re.compile(rb"(?:^|\n)event: ?(error|content_block_\w+)")


def messages_stream_status(first: bytes) -> int | None:
    """A Messages stream with an `error` event before its first content event (it may follow
    `message_start` and pings): the status it stands for; else None."""
    m = _MESSAGES_ERROR.search(first, 0, _OPENING)
    if m is None or m.group(1) != b"error":
        return None
    at = first.find(b"data:", m.end())
    end = first.find(b"\n", at)
    if at < 0:
        return 500
    try:
        obj = orjson.loads(first[at + 5 : end if end > 0 else None])
    except orjson.JSONDecodeError:
        return 500
    err = obj.get("error") if isinstance(obj, dict) else None
    kind = err.get("type") if isinstance(err, dict) else None
    return ANTHROPIC_STATUSES.get(kind, 500) if isinstance(kind, str) else 500


def _opening_error(first: bytes) -> object:
    """The `error` member of a stream whose first data event is an error object, else None."""
    if first.find(b'"error"', 0, _HEAD) < 0:
        return None  # the common case, without a copy
    head = first[:_HEAD].lstrip()
    while head.startswith(b":"):  # comments before the first event
        head = head[head.find(b"\n") + 1 :].lstrip() if b"\n" in head else b""
    end = head.find(b"\n")
    line = head[: end if end > 0 else None]  # the first event only: later ones are mid-stream
    if not line.startswith(b"data:") or b'"error"' not in line[:64]:
        return None
    try:
        obj = orjson.loads(line[5:])
    except orjson.JSONDecodeError:
        return {}
    if isinstance(obj, list) and obj:
        obj = obj[0]
    return obj.get("error", {}) if isinstance(obj, dict) else {}


def google_stream_status(first: bytes) -> int | None:
    """A Gemini stream whose first event is an error object: its `code`; else None."""
    err = _opening_error(first)
    if err is None:
        return None
    code = err.get("code") if isinstance(err, dict) else None
    return code if isinstance(code, int) and 400 <= code <= 599 else 500


def openai_stream_status(first: bytes) -> int | None:
    """An OpenAI-compatible stream whose first event is `{"error": {...}}` (vLLM, routers):
    the status it stands for (an integer `code`, else its type or code name); else None."""
    err = _opening_error(first)
    if err is None:
        return None
    if not isinstance(err, dict):
        return 500
    code = err.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    for name in (err.get("type"), code):
        if isinstance(name, str) and name in OPENAI_STATUSES:
            return OPENAI_STATUSES[name]
    return 500
