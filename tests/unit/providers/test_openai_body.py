"""Tests for proxy.providers.openai_body: peek validation (400s, OpenAI-shaped) and the in-place model rewrite."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.errors import GatewayError, too_large
from proxy.core.exchange import Peek
from proxy.providers.openai_body import (
    ask_for_usage,
    peek,
    peek_body,
    rewrite_model,
    spliced,
)

# --- peek --------------------------------------------------------------------------------------


def test_peek_minimal() -> None:
    assert peek(b'{"model":"chat-fast"}') == Peek(
        model="chat-fast", stream=False, include_usage=False, has_stream_options=False
    )


def test_peek_stream_and_include_usage() -> None:
    body = b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}'
    assert peek(body) == Peek(model="m", stream=True, include_usage=True, has_stream_options=True)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ('{"include_usage":false}', False),
        ('{"include_usage":1}', False),
        ('{"include_usage":"true"}', False),
        ("{}", False),
        ("null", False),
        ("[true]", False),
        ('{"include_usage":true,"x":1}', True),
    ],
)
def test_include_usage_only_when_exactly_true(options: str, expected: bool) -> None:
    body = f'{{"model":"m","stream":true,"stream_options":{options}}}'.encode()
    assert peek(body).include_usage is expected


def test_stream_null_means_false() -> None:
    assert peek(b'{"model":"m","stream":null}').stream is False


def test_stream_false() -> None:
    assert peek(b'{"model":"m","stream":false}').stream is False


def assert_400(body: bytes, param: str | None, fragment: str) -> None:
    with pytest.raises(GatewayError) as info:
        peek(body)
    err = info.value
    assert err.status == 400
    assert err.param == param
    assert err.type == "invalid_request_error"
    assert err.code == "invalid_request"
    assert err.should_retry is False
    assert fragment in err.message
    payload = orjson.loads(err.body())
    assert payload == {
        "error": {
            "message": err.message,
            "type": "invalid_request_error",
            "param": param,
            "code": "invalid_request",
        }
    }
    assert err.headers()["x-should-retry"] == "false"


def test_empty_body() -> None:
    assert_400(b"", None, "empty")


@pytest.mark.parametrize(
    "body", [b"{", b"model=x", b'{"model":"m",}', b"\xff\xfe", b'{"model":"m"} x', b"NaN"]
)
def test_invalid_json(body: bytes) -> None:
    assert_400(body, None, "not valid JSON")


@pytest.mark.parametrize("body", [b'[{"model":"m"}]', b'"m"', b"1", b"null", b"true"])
def test_not_an_object(body: bytes) -> None:
    assert_400(body, None, "JSON object")


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"model":""}',
        b'{"model":null}',
        b'{"model":1}',
        b'{"model":["m"]}',
        b'{"model":{"id":"m"}}',
        b'{"messages":[{"model":"m"}]}',
    ],
)
def test_missing_or_bad_model(body: bytes) -> None:
    assert_400(body, "model", "`model`")


@pytest.mark.parametrize("stream", [b'"true"', b"1", b"0", b"{}", b"[]"])
def test_stream_not_bool(stream: bytes) -> None:
    assert_400(b'{"model":"m","stream":' + stream + b"}", "stream", "`stream`")


def test_too_large() -> None:
    err = too_large(1024)
    assert err.status == 413
    assert err.code == "request_too_large"
    assert "1024" in err.message
    assert err.headers()["x-should-retry"] == "false"


# --- rewrite_model -----------------------------------------------------------------------------


def test_same_model_returns_body_untouched() -> None:
    body = b'{"model": "x"}'
    assert rewrite_model(body, "x", "x") is body


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b'{"model":', b',"stream":true}'),
        (b'{"model" : ', b' ,"stream":true}'),
        (b'{\n  "model"\t:\r\n ', b"\n}"),
        (b'{"messages": [{"role": "user", "content": "hi there"}],   "model"  :', b"  }"),
        (b'{"temperature":0.5e0,"model":', b',"max_tokens":10,"tools":[] }'),
    ],
)
def test_splice_keeps_every_other_byte(before: bytes, after: bytes) -> None:
    body = before + b'"chat-fast"' + after
    out = rewrite_model(body, "chat-fast", "gpt-4o-mini-2024-07-18")
    assert out == before + b'"gpt-4o-mini-2024-07-18"' + after


def test_splice_when_model_is_last_and_body_has_odd_floats() -> None:
    # Re-encoding would change 1.50 to 1.5 and 1e2 to 100.0; the splice must not.
    body = b'{"temperature":1.50,"top_p":1e2,"model":"a"}'
    assert rewrite_model(body, "a", "b") == b'{"temperature":1.50,"top_p":1e2,"model":"b"}'


def test_nested_model_falls_back_to_reencode() -> None:
    body = (
        b'{"model": "x", "tools": [{"type": "function", "function": {"name": "f",'
        b' "parameters": {"model": "x"}}}], "metadata": {"model": "x"}}'
    )
    out = rewrite_model(body, "x", "y")
    data = orjson.loads(out)
    assert data["model"] == "y"
    assert data["tools"][0]["function"]["parameters"]["model"] == "x"
    assert data["metadata"]["model"] == "x"
    assert data == {**orjson.loads(body), "model": "y"}


def test_nested_model_before_top_level_one() -> None:
    body = b'{"metadata":{"model":"x"},"model":"x"}'
    assert orjson.loads(rewrite_model(body, "x", "y")) == {"metadata": {"model": "x"}, "model": "y"}


def test_model_text_inside_a_value_is_not_mistaken_for_the_key() -> None:
    body = b'{"messages":[{"role":"user","content":"say \\"model\\": \\"x\\""}],"model":"x"}'
    out = rewrite_model(body, "x", "y")
    data = orjson.loads(out)
    assert data["model"] == "y"
    assert data["messages"][0]["content"] == 'say "model": "x"'


def test_value_equal_to_the_word_model() -> None:
    body = b'{"role":"model","model":"x"}'
    assert orjson.loads(rewrite_model(body, "x", "y")) == {"role": "model", "model": "y"}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("模型-快", "modèle-ü"),
        ("chat", "😀-emoji"),
        ('quote"d', "back\\slash"),
        ("tab\there", "line\nbreak"),
        ("ascii", "日本語"),
    ],
)
def test_unicode_and_escaped_model_names(old: str, new: str) -> None:
    obj = {"messages": [{"role": "user", "content": "héllo"}], "model": old, "stream": True}
    body = orjson.dumps(obj)
    out = rewrite_model(body, old, new)
    assert orjson.loads(out) == {**obj, "model": new}
    prefix = body[: body.index(b'"model":') + 8]
    assert out.startswith(prefix)  # spliced: the bytes before the value are untouched


def test_escaped_encoding_of_old_name_falls_back() -> None:
    body = b'{"model":"caf\\u00e9","n":1}'
    out = rewrite_model(body, "café", "tea")
    assert orjson.loads(out) == {"model": "tea", "n": 1}


def test_duplicate_top_level_model_keys() -> None:
    body = b'{"model":"a","model":"b"}'
    assert orjson.loads(rewrite_model(body, peek(body).model, "z")) == {"model": "z"}


def test_escaped_top_level_key_does_not_rewrite_a_nested_model() -> None:
    # The top-level key is written `"mod\u0065l"` (valid JSON for "model"); the only bare
    # `"model"` in the bytes belongs to a nested object and must be left alone.
    body = b'{"mod\\u0065l":"x","meta":{"model":"x"}}'
    assert peek(body).model == "x"
    out = rewrite_model(body, "x", "y")
    assert orjson.loads(out) == {"model": "y", "meta": {"model": "x"}}


# --- property ----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["model", '"model"', '"model":"m"', "\\", '"'])
)
json_keys = st.text(max_size=8) | st.sampled_from(["model", "messages", "stream", "Model"])
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(json_keys, children, max_size=4)
    ),
    max_leaves=20,
)
model_names = st.text(min_size=1, max_size=30)


@settings(max_examples=150)
@given(
    st.dictionaries(json_keys, json_values, max_size=6),
    model_names,
    model_names,
    st.integers(min_value=0, max_value=6),
    st.sampled_from([0, orjson.OPT_INDENT_2, orjson.OPT_SORT_KEYS]),
)
def test_rewrite_equals_replacing_the_top_level_model(
    rest: dict[str, Any], old: str, new: str, position: int, option: int
) -> None:
    rest.pop("model", None)
    items = list(rest.items())
    items.insert(min(position, len(items)), ("model", old))
    obj = dict(items)
    body = orjson.dumps(obj, option=option)
    out = rewrite_model(body, old, new)
    assert orjson.loads(out) == {**obj, "model": new}
    if body.count(b'"model"') == 1:
        # Spliced: everything but the value is byte-identical.
        at = body.index(orjson.dumps(old), body.index(b'"model"') + 7)
        assert out == body[:at] + orjson.dumps(new) + body[at + len(orjson.dumps(old)) :]


@settings(max_examples=150)
@given(
    st.dictionaries(json_keys, json_values, max_size=6),
    model_names,
    model_names,
    st.integers(min_value=0, max_value=6),
    st.sampled_from([0, orjson.OPT_INDENT_2, orjson.OPT_SORT_KEYS]),
    st.booleans(),
)
def test_the_peeked_span_rewrites_as_a_search_would(
    rest: dict[str, Any], old: str, new: str, position: int, option: int, large: bool
) -> None:
    """Peek.model_span (found by the peek, small bodies parsed, large ones scanned) splices
    exactly where rewrite_model's own search would, or is absent."""
    for key in ("model", "stream", "stream_options", "max_tokens", "user", "tools"):
        rest.pop(key, None)  # routing keys the peek validates
    items = list(rest.items())
    items.insert(min(position, len(items)), ("model", old))
    if large:  # past FULL_PARSE_LIMIT, one long string: the scanned path
        items.append(("padding", "x" * (1 << 20)))
    obj = dict(items)
    pk, body = peek_body(orjson.dumps(obj, option=option))
    searched = rewrite_model(body, old, new)
    spliced = rewrite_model(body, old, new, pk.model_span)
    assert orjson.loads(spliced) == orjson.loads(searched) == {**obj, "model": new}
    if pk.model_span is not None:
        assert spliced == searched


@settings(max_examples=100)
@given(
    st.dictionaries(json_keys, json_values, max_size=6),
    model_names,
    model_names,
    st.integers(min_value=0, max_value=6),
    st.sampled_from([0, orjson.OPT_INDENT_2]),
    st.booleans(),
)
def test_spliced_pieces_join_to_the_rewritten_body(
    rest: dict[str, Any], old: str, new: str, position: int, option: int, add_usage: bool
) -> None:
    """The pieces a large body is sent as are, joined, the body the copying helpers build."""
    for key in ("model", "stream", "stream_options", "max_tokens", "user", "tools"):
        rest.pop(key, None)
    items = list(rest.items())
    items.insert(min(position, len(items)), ("model", old))
    pk, body = peek_body(orjson.dumps(dict(items), option=option))
    pieces = spliced(body, pk, new, add_usage)
    expected = rewrite_model(body, old, new, pk.model_span)
    if add_usage:
        expected = ask_for_usage(expected, pk.has_stream_options)
    if pieces is None:
        assert pk.model_span is None and old != new
    else:
        assert bytes(pieces) == expected
        assert len(pieces) == len(expected)


def test_a_large_body_with_a_repeated_routing_key_is_forwarded_as_understood() -> None:
    pad = b"x" * (1 << 20)
    body = b'{"model":"a","messages":[],"pad":"' + pad + b'","model":"b"}'
    pk, out = peek_body(body)
    assert (pk.model, pk.model_span) == ("b", None)
    assert orjson.loads(out)["model"] == "b"
    assert out.count(b'"model"') == 1


def test_a_large_body_with_an_escaped_top_level_key_splices_the_top_level_value() -> None:
    pad = b"x" * (1 << 20)
    body = b'{"messages":[{"model":"m"}],"mod\\u0065l":"m","pad":"' + pad + b'"}'
    pk, out = peek_body(body)
    assert pk.model_span is not None
    rewritten = orjson.loads(rewrite_model(out, "m", "up", pk.model_span))
    assert rewritten["model"] == "up"
    assert rewritten["messages"] == [{"model": "m"}]


# --- ask_for_usage ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"model":"m","stream":true}',
        b'{"model": "m", "stream": true }\n',
        b'{"model":"m","messages":[{"role":"user","content":"}"}],"stream":true}',
    ],
)
def test_ask_for_usage_splices_the_option(body: bytes) -> None:
    out = ask_for_usage(body, has_stream_options=False)
    assert orjson.loads(out) == {**orjson.loads(body), "stream_options": {"include_usage": True}}
    assert out.startswith(body.rstrip()[:-1].rstrip())


def test_ask_for_usage_merges_existing_options() -> None:
    body = b'{"model":"m","stream":true,"stream_options":{"include_obfuscation":false}}'
    out = orjson.loads(ask_for_usage(body, has_stream_options=True))
    assert out["stream_options"] == {"include_obfuscation": False, "include_usage": True}
