"""The fake provider playing an incident timeline on 127.0.0.1: 503s, 429s, a closed listener."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from proxy.fake import Behaviour, FakeProvider
from proxy.fake.timeline import Phase, Timeline

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]}
BOUND = 10.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    provider = FakeProvider(name="alpha")
    await provider.start()
    yield provider
    await asyncio.wait_for(provider.stop(), BOUND)


async def _status(session: aiohttp.ClientSession, fake: FakeProvider) -> tuple[int, dict[str, str]]:
    async with session.post(f"{fake.base_url}/chat/completions", json=CHAT) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


async def _until(t0: float, at: float) -> None:
    await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))


async def test_phases_answer_in_turn_then_the_provider_recovers(fake: FakeProvider) -> None:
    throttled = Behaviour(status=429, retry_after="1", retry_after_ms="300")
    timeline = Timeline(
        Behaviour(), (Phase(0.0, 0.4, Behaviour(status=503)), Phase(0.4, 0.8, throttled))
    )
    timeout = aiohttp.ClientTimeout(total=BOUND)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        play = asyncio.create_task(fake.play(timeline))
        t0 = time.monotonic()
        assert (await _status(session, fake))[0] == 503
        await _until(t0, 0.5)
        status, headers = await _status(session, fake)
        assert (status, headers["Retry-After"], headers["retry-after-ms"]) == (429, "1", "300")
        await _until(t0, 0.9)
        assert (await _status(session, fake))[0] == 200
        await asyncio.wait_for(play, BOUND)  # no refusal window: returns at once


async def test_a_refused_phase_closes_the_listener_and_reopens_it_on_the_same_port(
    fake: FakeProvider,
) -> None:
    port = fake.port
    timeline = Timeline(Behaviour(), (Phase(0.2, 0.7, Behaviour(), refuse=True),))
    connector = aiohttp.TCPConnector(force_close=True)  # every request a new connection
    timeout = aiohttp.ClientTimeout(total=BOUND)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        play = asyncio.create_task(fake.play(timeline))
        t0 = time.monotonic()
        assert (await _status(session, fake))[0] == 200
        await _until(t0, 0.4)
        with pytest.raises(aiohttp.ClientConnectorError):
            await _status(session, fake)
        await asyncio.wait_for(play, BOUND)  # returns once the listener is back
        assert fake.port == port
        assert (await _status(session, fake))[0] == 200


async def test_reset_forgets_the_timeline(fake: FakeProvider) -> None:
    timeline = Timeline(Behaviour(), (Phase(0.0, 60.0, Behaviour(status=500)),))
    await fake.play(timeline)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=BOUND)) as session:
        assert (await _status(session, fake))[0] == 500
        fake.reset()
        assert (await _status(session, fake))[0] == 200


async def test_an_answer_under_way_when_the_listener_closes_still_finishes() -> None:
    fake = FakeProvider(name="slowpoke", default=Behaviour(ttft_s=0.4))
    await fake.start()
    try:
        timeline = Timeline(fake.default, (Phase(0.1, 0.6, fake.default, refuse=True),))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=BOUND)) as session:
            answer = asyncio.create_task(_status(session, fake))
            await asyncio.sleep(0.05)  # the request is in flight before the phase starts
            play = asyncio.create_task(fake.play(timeline))
            assert (await asyncio.wait_for(answer, BOUND))[0] == 200
            await asyncio.wait_for(play, BOUND)
        assert fake.disconnects == []
    finally:
        await asyncio.wait_for(fake.stop(), BOUND)
