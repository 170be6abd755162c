"""Tests for proxy.usage: token counts from a JSON body or one SSE data payload."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.usage import MAX_PARSED_BODY, Usage, from_body, from_event

OPENAI_BODY = (
    b'{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},'
    b'"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,'
    b'"prompt_tokens_details":{"cached_tokens":0}}}'
)


def test_openai_chat_body() -> None:
    assert from_body(OPENAI_BODY) == Usage(tokens_in=12, tokens_out=5)


def test_embeddings_body_has_no_completion_tokens() -> None:
    body = b'{"object":"list","data":[],"usage":{"prompt_tokens":8,"total_tokens":8}}'
    assert from_body(body) == Usage(tokens_in=8, tokens_out=0)


def test_anthropic_style_body() -> None:
    body = b'{"type":"message","usage":{"input_tokens":30,"output_tokens":7}}'
    assert from_body(body) == Usage(tokens_in=30, tokens_out=7)


def test_openai_names_win_over_anthropic_names() -> None:
    body = b'{"usage":{"prompt_tokens":1,"completion_tokens":2,"input_tokens":3,"output_tokens":4}}'
    assert from_body(body) == Usage(tokens_in=1, tokens_out=2)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b'{"id":"x"}',
        b'{"usage":null}',
        b'{"usage":[1,2]}',
        b'{"usage":{}}',
        b'{"usage":{"completion_tokens":3}}',
        b'{"usage":{"prompt_tokens":"12","completion_tokens":3}}',
        b'{"usage":{"prompt_tokens":12,"completion_tokens":null}}',
        b'{"usage":{"prompt_tokens":1.5,"completion_tokens":3}}',
        b'[{"usage":{"prompt_tokens":1,"completion_tokens":1}}]',
        b'{"usage":{"prompt_tokens":1,',
        b'"usage"',
        b'\xff\xfe"usage"',
    ],
)
def test_body_without_usable_usage(body: bytes) -> None:
    assert from_body(body) is None


def test_bool_is_not_a_token_count() -> None:
    assert from_body(b'{"usage":{"prompt_tokens":true,"completion_tokens":false}}') is None


def test_body_size_cap() -> None:
    usage = b'{"usage":{"prompt_tokens":1,"completion_tokens":2},"pad":"'
    fill = MAX_PARSED_BODY - len(usage) - 2
    at_cap = usage + b"x" * fill + b'"}'
    assert len(at_cap) == MAX_PARSED_BODY
    assert from_body(at_cap) == Usage(1, 2)
    over = usage + b"x" * (fill + 1) + b'"}'
    assert from_body(over) is None


def test_include_usage_event() -> None:
    data = (
        b'{"id":"chatcmpl-gw-7f3a","object":"chat.completion.chunk","created":1767225600,'
        b'"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":61,"completion_tokens":15,'
        b'"total_tokens":76}}'
    )
    assert from_event(data) == Usage(tokens_in=61, tokens_out=15)


@pytest.mark.parametrize(
    "data",
    [
        b"[DONE]",
        b'{"choices":[{"delta":{"content":"hi"}}],"usage":null}',
        b'{"choices":[{"delta":{"content":"hi"}}],"usage": null}',
        b'{"choices":[{"delta":{"content":"the \\"usage\\" word"}}]}',
        b'{"usage":{"prompt_tokens":1',
        b'{"type":"message_delta","usage":{"output_tokens":15}}',
        b"",
    ],
)
def test_events_without_usage(data: bytes) -> None:
    assert from_event(data) is None


def test_anthropic_message_start_event() -> None:
    data = (
        b'{"type":"message_start","message":{"id":"msg_1"},'
        b'"usage":{"input_tokens":25,"output_tokens":1}}'
    )
    assert from_event(data) == Usage(tokens_in=25, tokens_out=1)


@given(
    st.integers(min_value=0, max_value=2**40),
    st.integers(min_value=0, max_value=2**40),
    st.dictionaries(st.sampled_from(["id", "model", "object", "x"]), st.text(max_size=10)),
)
def test_roundtrip(tokens_in: int, tokens_out: int, extra: dict[str, str]) -> None:
    obj = {**extra, "usage": {"prompt_tokens": tokens_in, "completion_tokens": tokens_out}}
    payload = orjson.dumps(obj)
    assert from_body(payload) == Usage(tokens_in, tokens_out)
    assert from_event(payload) == Usage(tokens_in, tokens_out)


@given(st.binary(max_size=200))
def test_never_raises_on_garbage(data: bytes) -> None:
    for blob in (data, b'"usage"' + data, data + b'{"usage":{}}'):
        assert isinstance(from_body(blob), Usage | None)
        assert isinstance(from_event(blob), Usage | None)
