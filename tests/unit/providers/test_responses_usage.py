"""Tests for proxy.providers.responses_usage: Responses streams pass through, usage is read."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.core.exchange import Usage
from proxy.providers.responses_usage import ResponsesUsageObserver


def cut(data: bytes, points: list[int]) -> list[bytes]:
    ps = sorted({p for p in points if 0 <= p <= len(data)})
    return [data[a:b] for a, b in zip([0, *ps], [*ps, len(data)], strict=True)]


RESPONSES_STREAM = (
    b'event: response.created\ndata: {"type":"response.created","response":{"usage":null}}\n\n'
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","delta":"\\"usage\\": no"}\n\n'
    b"event: response.completed\n"
    b'data: {"type":"response.completed","response":{"status":"completed",'
    b'"usage":{"input_tokens":11,"output_tokens":3,"total_tokens":14}}}\n\n'
)


@given(st.lists(st.integers(min_value=0, max_value=len(RESPONSES_STREAM)), max_size=20))
def test_responses_observer_keeps_bytes_and_reads_usage(points: list[int]) -> None:
    obs = ResponsesUsageObserver()
    out = b"".join(obs.chunk(p) for p in cut(RESPONSES_STREAM, points))
    assert out == RESPONSES_STREAM
    assert obs.usage == Usage(11, 3)
