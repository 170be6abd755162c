"""The top-level key scanner agrees with a full parse, and refuses what is not an object."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.core.errors import GatewayError
from proxy.providers.jsonscan import ScanError, top_level_values
from proxy.providers.openai_body import (
    FULL_PARSE_LIMIT,
    ask_for_usage,
    peek,
    rewrite_model,
    scannable,
)

WANTED = frozenset({b"model", b"stream", b"stream_options"})
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(['"model":1', "\\", '"', "}", "]", "{", ",", ":", '\\\\"'])
)
keys = st.text(max_size=8) | st.sampled_from(["model", "stream", "stream_options", "m\\"])
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.dictionaries(keys, values, max_size=7),
    st.sampled_from([0, orjson.OPT_INDENT_2, orjson.OPT_SORT_KEYS]),
)
def test_spans_parse_to_what_a_full_parse_sees(obj: dict[str, Any], option: int) -> None:
    body = orjson.dumps(obj, option=option)
    spans = top_level_values(body, WANTED)
    expected = {k: v for k, v in obj.items() if k.encode() in WANTED}
    assert {k.decode(): orjson.loads(body[a:b]) for k, (a, b) in spans.items()} == expected


def test_escaped_keys_are_decoded_and_last_duplicate_wins() -> None:
    body = b'{"mod\\u0065l": "a", "x": [1, {"model": "nested"}], "model" : "b" }'
    (a, b) = top_level_values(body, frozenset({b"model"}))[b"model"]
    assert body[a:b].strip() == b'"b"'
    assert top_level_values(b'{"mod\\u0065l":"a"}', frozenset({b"model"})) == {b"model": (14, 17)}


@pytest.mark.parametrize(
    "body",
    [b"[1]", b'{"a":1', b'{"a":"x}', b'{"a":1}}', b'{"a":[1}', b'{"a":1} x', b'"x"', b"{", b"  "],
)
def test_what_is_not_an_object_is_refused(body: bytes) -> None:
    with pytest.raises(ScanError):
        top_level_values(body, WANTED)


def big(prefix: bytes = b"") -> bytes:
    filler = b"QUJD" * (FULL_PARSE_LIMIT // 2)
    return (
        b'{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:'
        + filler
        + b'"}},{"type":"text","text":"say \\"model\\": x"}]}],'
        + prefix
        + b'"model":"chat","stream":true,"tools":[{"function":{"parameters":{"model":1}}}]}'
    )


def test_a_large_body_is_peeked_by_scanning_with_the_same_answer() -> None:
    body = big()
    assert len(body) > FULL_PARSE_LIMIT
    pk = peek(body)
    assert (pk.model, pk.stream, pk.include_usage, pk.has_stream_options) == (
        "chat",
        True,
        False,
        False,
    )
    with pytest.raises(GatewayError) as err:
        peek(body[:-1])  # truncated: not an object any more
    assert err.value.status == 400
    with pytest.raises(GatewayError) as err:
        peek(body.replace(b'"model":"chat"', b'"model":7'))
    assert err.value.param == "model"


def test_large_bodies_are_rewritten_by_splicing_the_top_level_model() -> None:
    body = big()  # "model" occurs three times: nested, in a string, at the top level
    out = rewrite_model(body, "chat", "gpt-x")
    assert len(out) == len(body) + 1
    assert out == body.replace(b'"model":"chat"', b'"model":"gpt-x"')
    streamed = ask_for_usage(out, has_stream_options=False)
    assert streamed == out[:-1] + b',"stream_options":{"include_usage":true}}'
    assert orjson.loads(streamed)["stream_options"] == {"include_usage": True}


def test_a_large_body_of_many_small_strings_is_parsed_whole_instead() -> None:
    body = orjson.dumps(
        {
            "messages": [{"role": "user", "content": "hi"}] * 60_000,
            "tools": [{"function": {"parameters": {"model": 1}}}],
            "model": "chat",
        }
    )
    assert len(body) > FULL_PARSE_LIMIT
    assert not scannable(body)
    assert scannable(big())
    assert peek(body).model == "chat"
    out = rewrite_model(body, "chat", "gpt-x")  # "model" twice: re-encoded, as for small ones
    assert orjson.loads(out)["model"] == "gpt-x"
    assert orjson.loads(out)["tools"] == [{"function": {"parameters": {"model": 1}}}]
