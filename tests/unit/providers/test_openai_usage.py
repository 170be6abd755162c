"""Tests for proxy.providers.openai_usage: token counts from a JSON body or one SSE data payload."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.exchange import Usage
from proxy.providers.openai_usage import (
    MAX_PARSED_BODY,
    UsageTap,
    drop_usage_events,
    from_body,
    from_event,
)

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
        b'{"usage":{"prompt_tokens":1,',
        b'"usage"',
        b'\xff\xfe"usage"',
    ],
)
def test_body_without_usable_usage(body: bytes) -> None:
    assert from_body(body) is None


def test_bool_is_not_a_token_count() -> None:
    assert from_body(b'{"usage":{"prompt_tokens":true,"completion_tokens":false}}') is None


def test_large_body_reads_only_the_usage_object() -> None:
    # Big answers are not parsed whole; the usage object at the end is still found.
    pad = b"x" * (MAX_PARSED_BODY + 10)
    body = b'{"data":"' + pad + b'","usage":{"prompt_tokens":3,"completion_tokens":4}}'
    assert from_body(body) == Usage(3, 4)


def test_usage_object_with_nested_details() -> None:
    body = (
        b'{"choices":[],"usage":{"prompt_tokens":9,"prompt_tokens_details":{"cached_tokens":4},'
        b'"completion_tokens":2,"completion_tokens_details":{"reasoning_tokens":1}},"x":{}}'
    )
    assert from_body(body) == Usage(9, 2, tokens_cached=4)


def test_usage_word_in_the_answer_text() -> None:
    body = (
        b'{"choices":[{"message":{"content":"my \\"usage"}}],'
        b'"usage":{"prompt_tokens":5,"completion_tokens":6}}'
    )
    assert from_body(body) == Usage(5, 6)
    before = (
        b'{"usage":{"prompt_tokens":5,"completion_tokens":6},'
        b'"choices":[{"message":{"content":"the \\"usage"}}]}'
    )
    assert from_body(before) == Usage(5, 6)


def test_large_body_without_a_parsable_usage_object_is_skipped() -> None:
    pad = b"x" * (MAX_PARSED_BODY + 10)
    assert from_body(b'{"usage":null,"data":"' + pad + b'"}') is None


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


usage_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.text(alphabet='usage"{}\\ :,x', max_size=12)
)
usage_keys = st.text(alphabet='usage"{}\\ :x', max_size=8).filter(lambda k: k != "usage")
usage_values = st.recursive(
    usage_scalars,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(usage_keys, c, max_size=3),
    max_leaves=10,
)


@settings(max_examples=150)
@given(
    st.dictionaries(usage_keys, usage_values, max_size=5),
    st.integers(min_value=0, max_value=5),
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=10**6),
    st.dictionaries(usage_keys, usage_values, max_size=2),
)
def test_from_body_agrees_with_a_whole_parse(
    rest: dict[str, Any], position: int, tokens_in: int, tokens_out: int, extra: dict[str, Any]
) -> None:
    # Strings full of quotes, braces and the word usage, anywhere, even inside the usage object.
    usage = {"prompt_tokens": tokens_in, **extra, "completion_tokens": tokens_out}
    items = list(rest.items())
    items.insert(min(position, len(items)), ("usage", usage))
    body = orjson.dumps(dict(items))
    assert from_body(body) == Usage(tokens_in, tokens_out)


# --- UsageTap -------------------------------------------------------------------------------

_STREAM = (
    b'data: {"id":"c","choices":[{"index":0,"delta":{"content":"data: usage"},"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}\n\n'
    b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}\n\n'
    b"data: [DONE]\n\n"
)
_KEY_AT = _STREAM.index(b'"usage":{')


@given(st.lists(st.integers(min_value=1, max_value=len(_STREAM) - 1), max_size=6))
def test_tap_finds_usage_over_splits_outside_the_key(cuts: list[int]) -> None:
    # Any split except one inside the key itself (upstreams write whole events).
    points = sorted({c for c in cuts if not _KEY_AT < c < _KEY_AT + 9})
    tap = UsageTap()
    for a, b in zip([0, *points], [*points, len(_STREAM)], strict=True):
        tap.feed(_STREAM[a:b])
    assert tap.usage == Usage(tokens_in=11, tokens_out=7)


def test_tap_ignores_streams_without_usage() -> None:
    tap = UsageTap()
    tap.feed(_STREAM[: _STREAM.index(b'data: {"id":"c","choices":[],')])
    tap.feed(b"data: [DONE]\n\n")
    assert tap.usage is None


# --- drop_usage_events ---------------------------------------------------------------------


def test_drop_usage_events_keeps_every_other_byte() -> None:
    assert drop_usage_events(_STREAM) == _STREAM.replace(
        b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}\n\n',
        b"",
    )


def test_drop_usage_events_leaves_usage_on_content_chunks() -> None:
    # Some servers report usage on every chunk: those chunks carry content and must stay.
    body = b'data: {"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}\n\n'
    assert drop_usage_events(body) == body
    assert drop_usage_events(body + body) == body + body


def test_drop_usage_events_first_and_only_event() -> None:
    event = b'data: {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}\n\n'
    assert drop_usage_events(event) == b""
    assert drop_usage_events(event + b"data: [DONE]\n\n") == b"data: [DONE]\n\n"
