"""Cache keys as properties: any key order or spacing gives one key; scopes never collide."""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from proxy.cache.key import cache_key

scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.text(max_size=10), values, min_size=1, max_size=6)


def _shuffled(value: Any, rng: random.Random) -> Any:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@given(bodies, st.integers(0, 2**32), st.sampled_from([None, 0, 2, "\t"]))
def test_key_order_and_whitespace_never_change_the_key(
    body: dict[str, Any], seed: int, indent: int | str | None
) -> None:
    plain = json.dumps(body).encode()
    other = json.dumps(_shuffled(body, random.Random(seed)), indent=indent).encode()
    assert cache_key("chat", "team:a", plain) == cache_key("chat", "team:a", other)


@given(bodies, st.text(min_size=1, max_size=10), st.text(min_size=1, max_size=10))
def test_scopes_and_routes_never_share_a_key(body: dict[str, Any], a: str, b: str) -> None:
    raw = json.dumps(body).encode()
    if a != b:
        assert cache_key("chat", f"team:{a}", raw) != cache_key("chat", f"team:{b}", raw)
        assert cache_key(f"chat:{a}", "*", raw) != cache_key(f"chat:{b}", "*", raw)
    assert cache_key("chat", f"team:{a}", raw) != cache_key("chat", f"key:{a}", raw)


@given(bodies, st.booleans(), st.booleans())
def test_the_stream_flag_and_its_options_do_not_split_the_key(
    body: dict[str, Any], stream: bool, usage: bool
) -> None:
    streamed = {**body, "stream": stream, "stream_options": {"include_usage": usage}}
    assert cache_key("chat", "t", json.dumps(body).encode()) == cache_key(
        "chat", "t", json.dumps(streamed).encode()
    )
