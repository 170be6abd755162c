"""Tests for proxy.routing.affinity: conversation keys, pins with TTLs on a fake clock."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from proxy.routing.affinity import Pin, PinTable, affinity_key, settle_pin

SYSTEM = [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}]


def body(first: str, turns: int, **extra: Any) -> bytes:
    msgs: list[dict[str, Any]] = [{"role": "user", "content": first}]
    for i in range(turns):
        msgs += [{"role": "assistant", "content": f"a{i}"}, {"role": "user", "content": f"u{i}"}]
    return orjson.dumps({"model": "m", "system": SYSTEM, "messages": msgs, **extra})


def key(raw: bytes, headers: dict[str, str] | None = None) -> tuple[str, bool] | None:
    return affinity_key(headers or {}, raw, "x-session-id")


@given(st.integers(0, 60), st.integers(0, 60))
def test_every_turn_of_a_conversation_has_one_key(a: int, b: int) -> None:
    assert key(body("task", a)) == key(body("task", b))


def test_different_conversations_and_systems_differ() -> None:
    assert key(body("task one", 1)) != key(body("task two", 1))
    other = orjson.dumps({"system": "other", "messages": [{"role": "user", "content": "task"}]})
    assert key(body("task", 0)) != key(other)


def test_session_header_wins_and_is_hashed() -> None:
    found = key(body("x", 0), {"x-session-id": "secret-session-7"})
    assert found is not None and found[0].startswith("s:") and "secret" not in found[0]
    assert found == key(body("y", 3), {"x-session-id": "secret-session-7"})


def test_one_hour_ttl_is_seen_and_bad_bodies_have_no_key() -> None:
    long = [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    raw = orjson.dumps({"system": long, "messages": [{"role": "user", "content": "x"}]})
    assert key(raw) is not None and key(raw)[1] is True  # type: ignore[index]
    assert key(body("x", 0)) is not None and key(body("x", 0))[1] is False  # type: ignore[index]
    assert key(b"[1, 2]") is None and key(b"nope") is None


def test_pins_expire_by_their_ttl_on_a_fake_clock() -> None:
    pins = PinTable()
    pins.put("k", "a", 300.0, now=1000.0)
    assert pins.get("k", 1299.9) == Pin("a", 1300.0)
    assert pins.get("k", 1300.0) is None
    assert len(pins) == 0


def test_pins_are_bounded_least_recently_used_first() -> None:
    pins = PinTable(limit=2)
    pins.put("a", "u", 10, 0)
    pins.put("b", "u", 10, 0)
    assert pins.get("a", 1) is not None  # a is now the most recent
    pins.put("c", "u", 10, 1)
    assert pins.get("b", 1) is None and pins.get("a", 1) is not None


def test_settle_pins_refreshes_on_cache_reads_and_moves_after_a_fault() -> None:
    pin = Pin("a", 100.0)
    assert settle_pin(None, "a", False, 0.0, 300) == ("a", 300)  # new conversation
    assert settle_pin(pin, "a", False, 50.0, 300) is None  # no cache read: not refreshed
    assert settle_pin(pin, "a", True, 50.0, 3600) == ("a", 3600)  # a read: full TTL again
    assert settle_pin(pin, "b", False, 50.0, 300) == ("b", 300)  # answered elsewhere: moved
    assert settle_pin(pin, None, True, 50.0, 300) is None  # failed: left as is
