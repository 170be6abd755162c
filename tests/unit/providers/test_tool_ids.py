"""Tests for proxy.providers.tool_ids: 9-character tool-call ids for servers that need them."""

from __future__ import annotations

import re

import orjson
from hypothesis import given
from hypothesis import strategies as st

from proxy.providers.tool_ids import short_id, shorten_tool_ids


@given(st.text(min_size=1, max_size=80))
def test_short_ids_fit_and_are_stable(tool_id: str) -> None:
    out = short_id(tool_id)
    assert re.fullmatch(r"[a-zA-Z0-9]{9}", out)
    assert short_id(tool_id) == out


def test_fitting_ids_are_kept_and_calls_still_match_their_results() -> None:
    assert short_id("abcDEF123") == "abcDEF123"
    body = orjson.dumps(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": "x"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {}}
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "3"},
            ],
        }
    )
    out = orjson.loads(shorten_tool_ids(body))
    call_id = out["messages"][1]["tool_calls"][0]["id"]
    assert re.fullmatch(r"[a-zA-Z0-9]{9}", call_id)
    assert out["messages"][2]["tool_call_id"] == call_id


def test_bodies_without_tool_calls_are_the_same_bytes() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "x"}]}'
    assert shorten_tool_ids(body) is body
