"""Tests for proxy.providers.stream_errors: 200 streams that open with an error event."""

from __future__ import annotations

import pytest

from proxy.providers.stream_errors import (
    google_stream_status,
    messages_stream_status,
    openai_stream_status,
)

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
        (b'event: message_start\ndata: {"type":"message_start"}\n\n' + OVERLOADED, 529),
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


START = b'event: message_start\ndata: {"type":"message_start","message":{}}\n\n'
PING = b'event: ping\ndata: {"type":"ping"}\n\n'
BLOCK = b'event: content_block_start\ndata: {"type":"content_block_start","index":0}\n\n'


@pytest.mark.parametrize(
    ("first", "status"),
    [
        (START + OVERLOADED, 529),
        (START + PING + OVERLOADED.replace(b"overloaded_error", b"api_error"), 500),
        (START.replace(b"\n", b"\r\n") + OVERLOADED.replace(b"\n", b"\r\n"), 529),
        (START + BLOCK + OVERLOADED, None),  # after content: the mid-stream rule holds
        (START + PING + BLOCK, None),
        (START + b"event: error\n", 500),
    ],
)
def test_messages_errors_after_message_start(first: bytes, status: int | None) -> None:
    assert messages_stream_status(first) == status


@pytest.mark.parametrize(
    ("first", "status"),
    [
        (b'data: {"error":{"message":"busy","type":"server_error","code":502}}\n\n', 502),
        (b'data: {"error":{"message":"slow down","code":"rate_limit_exceeded"}}\n\n', 429),
        (b'data: {"error":{"message":"x","type":"overloaded_error","code":null}}\n\n', 529),
        (b': hi\n\ndata: {"error":{"message":"x"}}\n\n', 500),
        (b'data: {"error": "bad"}\n\n', 500),
        (b'data: {"id":"c1","choices":[{"delta":{"content":"\\"error\\""}}]}\n\n', None),
        (b"data: [DONE]\n\n", None),
    ],
)
def test_openai_streams(first: bytes, status: int | None) -> None:
    assert openai_stream_status(first) == status


def test_an_error_after_the_first_content_event_is_not_an_opening_error() -> None:
    first = (
        b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
        b'data: {"error":{"message":"later","code":500}}\n\n'
    )
    assert openai_stream_status(first) is None
    assert google_stream_status(first) is None
