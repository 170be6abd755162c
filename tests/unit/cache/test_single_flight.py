"""Single-flight: one leader per key, followers get every chunk in order as it arrives."""

from __future__ import annotations

import asyncio

from proxy.cache.flight import Flight, Flights


async def test_twenty_identical_misses_make_one_leader() -> None:
    flights = Flights()
    joined = [flights.join("k") for _ in range(20)]
    assert sum(lead for _, lead in joined) == 1
    flight = joined[0][0]
    assert all(f is flight for f, _ in joined)

    async def follow() -> list[bytes]:
        return [c async for c in flight.follow()]

    followers = [asyncio.ensure_future(follow()) for _ in range(19)]
    await asyncio.sleep(0)
    for chunk in (b"data: 1\n\n", b"data: 2\n\n"):
        flight.add(chunk)
        await asyncio.sleep(0)
    flight.add(b"data: [DONE]\n\n")
    flights.land("k", flight, ok=True)
    got = await asyncio.gather(*followers)
    assert all(g == [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"] for g in got)
    assert len(flights) == 0
    assert flights.join("k")[1]  # landed: the next miss leads again


async def test_a_late_follower_gets_the_chunks_so_far_then_the_rest() -> None:
    flights = Flights()
    flight, _ = flights.join("k")
    flight.add(b"a")
    late = asyncio.ensure_future(_collect(flight))
    await asyncio.sleep(0)
    flight.add(b"b")
    flights.land("k", flight, ok=False)
    assert await late == [b"a", b"b"]
    assert not flight.ok


async def _collect(flight: Flight) -> list[bytes]:
    return [c async for c in flight.follow()]
