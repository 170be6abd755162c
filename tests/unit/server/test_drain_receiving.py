"""Drain and requests still receiving their body: closed at SIGTERM, or after a short grace."""

from __future__ import annotations

import asyncio

import pytest

from proxy.server import runtime
from proxy.server.runtime import Drain


async def _receiving(drain: Drain, gate: asyncio.Event) -> str:
    task = drain.start_receiving()
    try:
        await gate.wait()  # the body never comes
    finally:
        drain.done_receiving(task)
    return "received"


async def test_stop_receiving_cancels_only_requests_without_their_body() -> None:
    drain = Drain()
    gate, other = asyncio.Event(), asyncio.Event()
    stalled = asyncio.create_task(_receiving(drain, gate))
    done = asyncio.create_task(_receiving(drain, other))
    await asyncio.sleep(0)
    other.set()
    assert await done == "received"
    assert drain.stop_receiving() == 1
    with pytest.raises(asyncio.CancelledError):
        await stalled
    assert drain.receiving == set()
    assert drain.stop_receiving() == 0


async def test_a_request_arriving_while_draining_gets_a_short_grace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime, "RECEIVE_GRACE_S", 0.05)
    drain = Drain()
    drain.draining = True
    quick_gate = asyncio.Event()
    quick = asyncio.create_task(_receiving(drain, quick_gate))
    slow = asyncio.create_task(_receiving(drain, asyncio.Event()))
    await asyncio.sleep(0)
    quick_gate.set()
    assert await quick == "received"
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(slow, 1.0)
