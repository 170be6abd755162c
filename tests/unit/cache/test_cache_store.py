"""The memory store over a fake clock, and the entry codec the Redis store uses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from proxy.cache.lru import Entry
from proxy.cache.store import MemoryStore, decode, encode


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    store = MemoryStore(1000, 10_000, clock)
    store.put("k", Entry((b"body",), False, 0.0), ttl_s=5.0)
    clock.now += 4.9
    got = await store.get("k")
    assert got is not None and got.chunks == (b"body",)
    clock.now += 0.2
    assert await store.get("k") is None
    assert len(store.lru) == 0


async def test_entries_over_the_caps_are_dropped_oldest_first() -> None:
    clock = Clock()
    store = MemoryStore(10, 20, clock)
    store.put("big", Entry((b"x" * 11,), False, 0.0), 60)
    assert await store.get("big") is None
    for name in ("a", "b", "c"):
        store.put(name, Entry((b"y" * 8,), True, 0.0), 60)
    assert await store.get("a") is None
    assert await store.get("c") is not None


chunk_lists = st.lists(st.binary(max_size=40), max_size=6)
usages = st.none() | st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 10**6))


@given(chunk_lists, st.booleans(), st.booleans(), usages)
def test_codec_round_trips_every_entry(
    chunks: list[bytes], stream: bool, with_usage: bool, usage: tuple[int, int, int] | None
) -> None:
    entry = Entry(tuple(chunks), stream, 0.0, with_usage, usage)
    assert decode(encode(entry)) == entry


def test_codec_refuses_foreign_values() -> None:
    assert decode(b"") is None
    assert decode(b"hello world") is None
    good = encode(Entry((b"ab",), False, 0.0))
    assert decode(good + b"x") is None
    assert decode(good[:-1]) is None
