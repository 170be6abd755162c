"""Consistent hashing with bounded loads over a tier's weighted members (the `sticky` strategy)."""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Container, Sequence

POINTS_PER_WEIGHT = 40
"""Ring points per unit of weight: enough that a member's share of keys stays within a few
percent of its weight share, few enough that a ring of ten members builds in well under 1 ms."""
MAX_POINTS = 4000
"""Points of one member at most, whatever its weight (weights are relative)."""
LOAD_FACTOR = 1.25
"""Bounded loads (Mirrokni et al.): a member takes a key only while its in-flight count stays
below this factor times its weighted share of the tier's load; beyond it the key walks on."""


def key_hash(key: bytes) -> int:
    """A 64-bit hash stable across processes and restarts (Python's `hash` is salted)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


class Ring:
    """The ring of one tier: sorted points, each owned by a member index. Built once per tier."""

    __slots__ = ("owners", "points", "weights")

    def __init__(self, members: Sequence[tuple[str, int]]) -> None:
        pairs: list[tuple[int, int]] = []
        for index, (name, weight) in enumerate(members):
            count = min(MAX_POINTS, weight * POINTS_PER_WEIGHT)
            pairs.extend((key_hash(f"{name}\x00{n}".encode()), index) for n in range(count))
        pairs.sort()
        self.points = [p for p, _ in pairs]
        self.owners = [i for _, i in pairs]
        self.weights = [w for _, w in members]

    def lookup(
        self, h: int, candidates: Container[int], inflight: Sequence[int] | None = None
    ) -> int | None:
        """The member owning hash `h`: the first one clockwise that is a candidate and, when
        `inflight` is given, under its bounded load. None when no candidate is on the ring."""
        n = len(self.points)
        if n == 0:
            return None
        caps: list[float] | None = None
        if inflight is not None:
            live = [i for i in range(len(self.weights)) if i in candidates]
            total_w = sum(self.weights[i] for i in live)
            load = sum(inflight[i] for i in live) + 1
            caps = [LOAD_FACTOR * load * w / total_w if total_w else 0.0 for w in self.weights]
        start = bisect_left(self.points, h)
        first: int | None = None
        seen: set[int] = set()
        for step in range(n):
            owner = self.owners[(start + step) % n]
            if owner in seen:
                continue
            seen.add(owner)
            if owner not in candidates:
                continue
            if caps is None or inflight is None or inflight[owner] + 1 <= max(caps[owner], 1.0):
                return owner
            if first is None:
                first = owner
            if len(seen) == len(self.weights):
                break
        return first
