"""Tests for proxy.server.tasks: references kept and released, errors reported, bounded cancellation."""

from __future__ import annotations

import asyncio
import gc

import pytest

from proxy.server.tasks import Tasks


class Errors:
    def __init__(self) -> None:
        self.seen: list[tuple[str, BaseException]] = []

    def __call__(self, name: str, exc: BaseException) -> None:
        self.seen.append((name, exc))


async def test_spawn_names_and_returns_result() -> None:
    tasks = Tasks()

    async def answer() -> int:
        return 42

    task = tasks.spawn(answer(), name="answer")
    assert task.get_name() == "answer"
    assert len(tasks) == 1
    assert await task == 42
    await asyncio.sleep(0)
    assert len(tasks) == 0


async def test_keeps_strong_reference_until_done() -> None:
    tasks = Tasks()
    gate = asyncio.Event()
    ran: list[bool] = []

    async def waiter() -> None:
        await gate.wait()
        ran.append(True)

    # Drop the returned task on purpose: only the holder keeps it alive.
    tasks.spawn(waiter(), name="fire-and-forget")
    gc.collect()
    await asyncio.sleep(0)
    gc.collect()
    assert len(tasks) == 1
    gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert ran == [True]
    assert len(tasks) == 0


async def test_exception_reported_with_task_name() -> None:
    errors = Errors()
    tasks = Tasks(on_error=errors)
    boom = RuntimeError("boom")

    async def fails() -> None:
        raise boom

    task = tasks.spawn(fails(), name="reloader")
    await asyncio.wait([task])
    await asyncio.sleep(0)
    assert errors.seen == [("reloader", boom)]
    assert len(tasks) == 0


async def test_cancellation_and_success_are_not_errors() -> None:
    errors = Errors()
    tasks = Tasks(on_error=errors)

    async def forever() -> None:
        await asyncio.Event().wait()

    async def fine() -> str:
        return "ok"

    t1 = tasks.spawn(forever(), name="forever")
    t2 = tasks.spawn(fine(), name="fine")
    await asyncio.sleep(0)
    t1.cancel()
    await asyncio.wait([t1, t2])
    await asyncio.sleep(0)
    assert errors.seen == []
    assert len(tasks) == 0


async def test_cancel_all_cancels_and_waits() -> None:
    tasks = Tasks()
    cleaned: list[str] = []

    async def worker(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(name)

    spawned = [tasks.spawn(worker(f"w{i}"), name=f"w{i}") for i in range(3)]
    await asyncio.sleep(0)
    await tasks.cancel_all(timeout_s=1.0)
    assert all(t.cancelled() for t in spawned)
    # Newest first, like an exit stack.
    assert cleaned == ["w2", "w1", "w0"]
    await asyncio.sleep(0)
    assert len(tasks) == 0


async def test_cancel_all_respects_timeout_for_stubborn_task() -> None:
    tasks = Tasks()
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            # Deliberately slow cleanup that outlives the deadline.
            await release.wait()

    task = tasks.spawn(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await tasks.cancel_all(timeout_s=0.05)
    assert loop.time() - started < 1.0
    assert not task.done()
    assert len(tasks) == 1
    release.set()
    await task
    await asyncio.sleep(0)
    assert len(tasks) == 0


async def test_cancel_all_with_nothing_running() -> None:
    await Tasks().cancel_all(timeout_s=0.1)


async def test_cancel_all_from_inside_a_spawned_task_spares_the_caller() -> None:
    tasks = Tasks()

    async def other() -> None:
        await asyncio.Event().wait()

    async def shutdown() -> str:
        await tasks.cancel_all(timeout_s=1.0)
        return "done"

    victim = tasks.spawn(other(), name="other")
    await asyncio.sleep(0)
    closer = tasks.spawn(shutdown(), name="shutdown")
    assert await closer == "done"
    assert victim.cancelled()


async def test_without_on_error_exception_still_surfaces_to_awaiter() -> None:
    tasks = Tasks()

    async def fails() -> None:
        raise ValueError("bad")

    task = tasks.spawn(fails(), name="fails")
    with pytest.raises(ValueError, match="bad"):
        await task
