"""One task per running job, spawned by the event loop's own task group.

A worker starts a task for every job it claims. anyio's task groups give each task a handle
with a cancel scope and an event of its own (anyio 4.14 and later): a spawn cost 13-16 µs here,
against 3-5 µs for the event loop's own task groups, ``asyncio.TaskGroup`` and a trio nursery.
On a queue of short jobs that difference was a tenth of the worker's time (docs/performance.md).

The native groups keep the structure the worker relies on: the group waits for its tasks on
exit; a task that raises cancels the others and the group's host, and the group raises the
error (in an exception group, as anyio's do); cancelling the host (a hard stop cancels the
worker's outer anyio scope) cancels the tasks. Each job's own anyio cancel scope
(``Attempt.scope``) still stops it: anyio's scopes work in tasks it did not spawn. On a trio
run anyio's scopes are trio's, so a nursery behaves exactly as anyio's group would.

Failure story: a task that raises anything but an ``OSError`` (which ``Worker._run_job``
handles) is a bug: it ends the worker as it did before, and the jobs it held come back by
lease.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Protocol

from jobq.fileio import on_asyncio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine

__all__ = ("JobTasks", "job_tasks")


class JobTasks(Protocol):
    """What the worker needs of a task group: spawn ``fn(arg)`` as a task of its own."""

    def __call__(self, fn: Callable[[Any], Coroutine[Any, Any, object]], arg: Any, /) -> object:
        """Start ``fn(arg)`` as a new task of the group."""


@contextlib.asynccontextmanager
async def job_tasks() -> AsyncIterator[JobTasks]:
    """A task group of the running event loop's own kind; yields its spawn function.

    ``asyncio.TaskGroup`` on asyncio, a nursery on trio (anyio's only other backend).
    """
    if on_asyncio():
        async with asyncio.TaskGroup() as group:

            def spawn(fn: Callable[[Any], Coroutine[Any, Any, object]], arg: Any, /) -> None:
                group.create_task(fn(arg))

            yield spawn
        return
    import trio  # only ever run by a worker on trio, which has it

    async with trio.open_nursery() as nursery:
        yield nursery.start_soon
