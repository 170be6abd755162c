"""Tests for proxy.providers.stream_errors: 200 streams that open with an error event."""

from __future__ import annotations

import pytest

from proxy.providers.stream_errors import google_stream_status, messages_stream_status

OVERLOADED = (
    b"event: error\n"
    b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
)


@pytest.mark.parametrize(
    ("first", "status"),
    [
        (OVERLOADED, 529),
        (OVERLOADED.replace(b"overloaded_error", b"rate_limit_error"), 429),
        (OVERLOADED.replace(b"overloaded_error", b"mystery_error"), 500),
        (b"event: error\ndata: not json\n\n", 500),
        (b'event: message_start\ndata: {"type":"message_start"}\n\n' + OVERLOADED, None),
        (b"", None),
    ],
)
def test_messages_streams(first: bytes, status: int | None) -> None:
    assert messages_stream_status(first) == status


@pytest.mark.parametrize(
    ("first", "status"),
    [
        (
            b'data: {"error":{"code":503,"message":"Overloaded","status":"UNAVAILABLE"}}\r\n\r\n',
            503,
        ),
        (
            b'data: [{"error":{"code":429,"message":"x","status":"RESOURCE_EXHAUSTED"}}]\r\n\r\n',
            429,
        ),
        (b'data: {"candidates":[{"content":{"parts":[{"text":"\\"error\\""}]}}]}\r\n\r\n', None),
    ],
)
def test_gemini_streams(first: bytes, status: int | None) -> None:
    assert google_stream_status(first) == status
