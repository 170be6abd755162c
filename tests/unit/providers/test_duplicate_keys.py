"""Tests for proxy.providers.openai_body.peek_body: the body forwarded is the one the gateway read."""

from __future__ import annotations

import orjson
import pytest

from proxy.providers.openai_body import peek_body


def test_a_plain_body_is_forwarded_as_the_same_bytes() -> None:
    body = b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}}'
    pk, out = peek_body(body)
    assert out is body and pk.model == "m" and pk.stream


@pytest.mark.parametrize(
    ("body", "model", "stream"),
    [
        (b'{"model": "a", "messages": [], "model": "b"}', "b", False),
        (b'{"model": "m", "stream": true, "stream": false}', "m", False),
        (b'{"model": "m", "stream": false, "stream": true}', "m", True),
    ],
)
def test_a_duplicated_routing_key_is_collapsed_to_the_value_acted_on(
    body: bytes, model: str, stream: bool
) -> None:
    pk, out = peek_body(body)
    assert (pk.model, pk.stream) == (model, stream)
    assert out.count(b'"model"') == 1
    assert out.count(b'"stream"') <= 1
    assert orjson.loads(out) == orjson.loads(body)  # orjson also keeps the last copy


def test_duplicated_stream_options_are_collapsed() -> None:
    body = (
        b'{"model": "m", "stream": true, "stream_options": {"include_usage": false},'
        b' "stream_options": {"include_usage": true}}'
    )
    pk, out = peek_body(body)
    assert pk.include_usage
    assert out.count(b'"stream_options"') == 1


def test_a_value_that_reads_like_a_key_changes_nothing_but_the_spelling() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "model"}]}'
    _, out = peek_body(body)
    assert orjson.loads(out) == orjson.loads(body)


def test_a_large_scanned_body_with_a_nested_model_key_is_forwarded_whole() -> None:
    """Above the scan threshold the peek reads only a few keys; a repeated key text must not
    make the gateway forward just those keys."""
    image = "A" * (2 << 20)
    body = orjson.dumps(
        {
            "model": "chat",
            "messages": [{"role": "user", "content": image}],
            "metadata": {"model": "nested"},
            "max_tokens": 7,
        }
    )
    pk, out = peek_body(body)
    assert (pk.model, pk.max_tokens) == ("chat", 7)
    assert orjson.loads(out) == orjson.loads(body)


def test_a_large_body_with_a_duplicated_model_is_collapsed_in_full() -> None:
    image = "A" * (2 << 20)
    body = (
        b'{"model": "first", "messages": [{"role": "user", "content": "'
        + image.encode()
        + b'"}], "model": "chat"}'
    )
    pk, out = peek_body(body)
    assert pk.model == "chat"
    assert orjson.loads(out) == {"model": "chat", "messages": [{"role": "user", "content": image}]}


def test_stream_text_only_in_nested_values_needs_no_rewrite() -> None:
    """Without a top-level `stream` or `stream_options`, copies of their text are nested:
    no parser reads a routing value from them, so the bytes pass as they came."""
    body = b'{"model": "m", "metadata": {"stream": true, "stream_options": {}}}'
    pk, out = peek_body(body)
    assert out is body and not pk.stream
