"""Streams the fake provider opens with HTTP 200 and then fails in-band, before any content."""

from __future__ import annotations

import orjson

from proxy.fake import anthropic_dialect as anth
from proxy.fake import gemini_dialect as gem
from proxy.fake import openai_dialect as oai

ERROR_STATUSES = {
    "overloaded_error": 529,
    "api_error": 500,
    "rate_limit_error": 429,
    "timeout_error": 504,
}
"""The in-band error types the fake can script, with the status each stands for."""


def opening_error(dialect: str, events: oai.Events, kind: str) -> tuple[bytes, ...]:
    """What a stream that fails with `kind` before its first content sends, after HTTP 200.

    Anthropic: `message_start` and a ping, then an `error` event (as the Messages API does when
    it is overloaded); OpenAI-compatible servers and Gemini: an error object as first event.
    """
    status = ERROR_STATUSES.get(kind, 500)
    if dialect == "anthropic":
        start = events.head[0] if events.head else b""
        body = orjson.dumps({"type": "error", "error": {"type": kind, "message": kind}})
        return (start, anth.PING, b"event: error\ndata: " + body + b"\n\n")
    if dialect == "gemini":
        return (b"data: " + gem.error(status) + b"\r\n\r\n",)
    return (b"data: " + oai.error(kind, kind="server_error", code=kind) + b"\n\n",)
