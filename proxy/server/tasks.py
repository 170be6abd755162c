"""Named background tasks with strong references, cancelled together at shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TypeVar

__all__ = ["Tasks"]

T = TypeVar("T")

ErrorCallback = Callable[[str, BaseException], None]


class Tasks:
    """Owns the background tasks of one component.

    The event loop only keeps weak references to tasks, so a task nobody holds can
    be garbage-collected mid-flight; this holder keeps each one until it finishes.
    """

    __slots__ = ("_on_error", "_tasks")

    def __init__(self, on_error: ErrorCallback | None = None) -> None:
        self._on_error = on_error
        # A dict, not a set: insertion order lets cancel_all go newest first.
        self._tasks: dict[asyncio.Task[object], None] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[object, object, T], *, name: str) -> asyncio.Task[T]:
        """Start coro as a task called name and keep it referenced until done."""
        task = asyncio.create_task(coro, name=name)
        self._tasks[task] = None
        task.add_done_callback(self._finished)
        return task

    async def cancel_all(self, timeout_s: float) -> None:
        """Cancel every task and wait up to timeout_s for them to finish.

        Tasks that outlive the deadline stay referenced (and counted by len()).
        The calling task is never cancelled, even if this holder spawned it.
        """
        current = asyncio.current_task()
        pending = [t for t in reversed(self._tasks) if t is not current and not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=max(timeout_s, 0.0))

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._tasks.pop(task, None)
        if task.cancelled():
            return
        if self._on_error is None:
            # Left unretrieved on purpose: asyncio then logs it when the task is collected.
            return
        exc = task.exception()
        if exc is not None:
            self._on_error(task.get_name(), exc)
