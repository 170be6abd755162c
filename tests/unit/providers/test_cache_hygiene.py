"""Tests for proxy.providers.cache_hygiene: tool order, breakpoint cap, TTL strip, pure over bytes."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from proxy.config.agent import Hygiene
from proxy.providers.cache_hygiene import asks_long_ttl, breakpoints, tidy

CC: dict[str, Any] = {"type": "ephemeral"}
CC_1H: dict[str, Any] = {"type": "ephemeral", "ttl": "1h"}


def tool(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "input_schema": {"type": "object"}, **extra}


def text(t: str, **extra: Any) -> dict[str, Any]:
    return {"type": "text", "text": t, **extra}


def run(obj: dict[str, Any], **rules: Any) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(tidy(orjson.dumps(obj), Hygiene(**rules)))
    return out


def test_tools_sorted_by_name_and_the_tail_breakpoint_stays_last() -> None:
    body = {"tools": [tool("zeta"), tool("alpha"), tool("mid", cache_control=CC)]}
    out = run(body, sort_tools=True)
    assert [t["name"] for t in out["tools"]] == ["alpha", "mid", "zeta"]
    assert [("cache_control" in t) for t in out["tools"]] == [False, False, True]


def test_openai_tools_sorted_by_function_name() -> None:
    fns = [{"type": "function", "function": {"name": n}} for n in ("b", "a", "c")]
    out = run({"tools": fns}, sort_tools=True)
    assert [t["function"]["name"] for t in out["tools"]] == ["a", "b", "c"]


def test_order_does_not_depend_on_the_clients_order() -> None:
    one = run({"tools": [tool("b"), tool("a"), tool("c")]}, sort_tools=True)
    two = run({"tools": [tool("c"), tool("b"), tool("a")]}, sort_tools=True)
    assert one == two


def test_only_the_last_breakpoints_are_kept() -> None:
    body = {
        "tools": [tool("a", cache_control=CC)],
        "system": [text("s1", cache_control=CC), text("s2", cache_control=CC)],
        "messages": [
            {"role": "user", "content": [text("u1", cache_control=CC)]},
            {"role": "assistant", "content": "ok"},
            {
                "role": "user",
                "content": [text("u2", cache_control=CC), text("u3", cache_control=CC)],
            },
        ],
    }
    out = run(body, max_breakpoints=4)
    assert len(list(breakpoints(out))) == 4
    assert "cache_control" not in out["tools"][0]
    assert "cache_control" not in out["system"][0]
    assert "cache_control" in out["system"][1]
    assert "cache_control" in out["messages"][2]["content"][1]


def test_ttl_stripped_and_long_ttl_detected() -> None:
    body = {"system": [text("s", cache_control=CC_1H)], "messages": []}
    assert asks_long_ttl(body)
    out = run(body, strip_cache_ttl=True)
    assert out["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert not asks_long_ttl(out)


def test_unchanged_bodies_keep_their_bytes() -> None:
    raw = b'{"model": "x",  "messages": [], "tools": [{"name": "a"}, {"name": "b"}]}'
    rules = Hygiene(sort_tools=True, max_breakpoints=4, strip_cache_ttl=True)
    assert tidy(raw, rules) is raw
    assert tidy(b"not json", rules) == b"not json"
    assert tidy(b'{"model": "x"}', Hygiene(max_breakpoints=4)) == b'{"model": "x"}'


@given(
    st.lists(st.booleans(), min_size=0, max_size=12),
    st.integers(min_value=1, max_value=4),
)
def test_never_more_than_the_cap_and_the_latest_survive(marks: list[bool], cap: int) -> None:
    msgs = [
        {"role": "user", "content": [text(f"m{i}", **({"cache_control": CC} if m else {}))]}
        for i, m in enumerate(marks)
    ]
    out = run({"messages": msgs}, max_breakpoints=cap)
    kept = [i for i, m in enumerate(out["messages"]) if "cache_control" in m["content"][0]]
    marked = [i for i, m in enumerate(marks) if m]
    assert kept == marked[-cap:] if marked else kept == []
