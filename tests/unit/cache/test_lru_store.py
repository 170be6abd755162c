"""The memory store: TTL, per-entry cap, total cap with least-recently-used eviction."""

from __future__ import annotations

from proxy.cache.lru import Entry, LRUStore


def entry(size: int, expires: float = 100.0) -> Entry:
    return Entry(chunks=(b"x" * size,), stream=False, expires=expires)


def test_ttl_expires_entries() -> None:
    s = LRUStore(100, 1000)
    assert s.put("a", entry(10, expires=5.0))
    assert s.get("a", 4.9) is not None
    assert s.get("a", 5.0) is None
    assert s.total == 0


def test_entries_over_the_cap_are_refused() -> None:
    s = LRUStore(100, 1000)
    assert not s.put("big", entry(101))
    assert len(s) == 0


def test_total_cap_evicts_the_least_recently_used() -> None:
    s = LRUStore(100, 250)
    for k in "abc":
        assert s.put(k, entry(80))
    assert s.get("a", 0.0) is not None  # 240 bytes fit in 250
    s.put("d", entry(80))
    assert s.get("b", 0.0) is None  # the least recently used went
    assert s.total == 240
    s2 = LRUStore(100, 250)
    s2.put("a", entry(100))
    s2.put("b", entry(100))
    assert s2.get("a", 0.0) is not None  # a is now the most recent
    s2.put("c", entry(100))
    assert s2.get("b", 0.0) is None
    assert s2.get("a", 0.0) is not None
    assert s2.total == 200


def test_replacing_an_entry_keeps_the_total_right() -> None:
    s = LRUStore(100, 1000)
    s.put("a", entry(50))
    s.put("a", entry(20))
    assert s.total == 20
