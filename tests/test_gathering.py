"""Concurrent durable enqueues share their syncs, and each still fails or succeeds as its own.

What a user checks: every job of concurrent ``await enqueue()`` calls is in ``pending/`` and
runs; far fewer directory syncs than jobs were paid; an argument that is not JSON fails only
its own call; a refused write fails every enqueue of its group and publishes none of them,
and the next enqueue works; two enqueues of one key in one group give one job.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from apps import e2e

import jobq
from jobq.spool import files

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio

TASKS = 24


def pending(spool: Path) -> list[str]:
    """The job files waiting in the default queue."""
    return sorted(os.listdir(spool / "queues" / "default" / "pending"))


async def enqueue_together(calls: list[tuple[Any, ...]]) -> list[jobq.JobHandle[Any] | Exception]:
    """Start one task per call at once; each call's handle, or the error it raised."""
    outcomes: list[jobq.JobHandle[Any] | Exception] = [ValueError("never ran")] * len(calls)

    async def one(i: int, args: tuple[Any, ...]) -> None:
        try:
            outcomes[i] = await e2e.add.enqueue(*args)
        except (jobq.SpoolError, jobq.SerializationError) as exc:
            outcomes[i] = exc

    async with anyio.create_task_group() as tg:
        for i, args in enumerate(calls):
            tg.start_soon(one, i, args)
    return outcomes


async def test_concurrent_enqueues_share_syncs_and_all_run(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await e2e.add.enqueue(0, 0)  # the queue exists
    synced_dirs: list[str] = []
    real_fsync_dir = files.FileOps.fsync_dir

    def fsync_dir(self: files.FileOps, path: str, **kwargs: Any) -> None:
        synced_dirs.append(path)
        real_fsync_dir(self, path, **kwargs)

    monkeypatch.setattr(files.FileOps, "fsync_dir", fsync_dir)
    handles = await enqueue_together([(i, 1) for i in range(TASKS)])
    monkeypatch.undo()

    assert len(pending(spool_path)) == TASKS + 1
    assert 1 <= len(synced_dirs) <= TASKS // 4  # one per group: the first alone, then the rest
    await jobq.Worker(spool_path).run(burst=True)
    results = [await h.result(timeout=5) for h in handles if isinstance(h, jobq.JobHandle)]
    assert results == [i + 1 for i in range(TASKS)]


async def test_an_argument_that_is_not_json_fails_only_its_own_enqueue(spool_path: Path) -> None:
    await e2e.add.enqueue(0, 0)
    calls: list[tuple[Any, ...]] = [(i, 1) for i in range(TASKS)]
    calls[5] = (object(), 1)
    outcomes = await enqueue_together(calls)
    assert isinstance(outcomes[5], jobq.SerializationError)
    assert all(isinstance(o, jobq.JobHandle) for i, o in enumerate(outcomes) if i != 5)
    assert len(pending(spool_path)) == TASKS


async def test_a_refused_group_fails_each_of_its_enqueues_and_publishes_none(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await e2e.add.enqueue(0, 0)
    before = pending(spool_path)

    def full(*args: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    monkeypatch.setattr(files, "_syncfs", full)
    outcomes = await enqueue_together([(i, 1) for i in range(TASKS)])
    monkeypatch.undo()

    assert all(isinstance(o, jobq.SpoolError) and o.errno == errno.ENOSPC for o in outcomes)
    assert pending(spool_path) == before
    assert os.listdir(spool_path / "tmp") == []
    await e2e.add.enqueue(1, 1)  # there is room again
    assert len(pending(spool_path)) == len(before) + 1


async def test_one_key_enqueued_twice_in_a_group_is_one_job(spool_path: Path) -> None:
    await e2e.add.enqueue(0, 0)
    keyed = e2e.add.options(key="once")
    handles: list[jobq.JobHandle[int]] = []

    async def one() -> None:
        handles.append(await keyed.enqueue(2, 3))

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(one)
    assert len({h.id for h in handles}) == 1
    assert len(pending(spool_path)) == 2
    await jobq.Worker(spool_path).run(burst=True)
    assert await handles[0].result(timeout=5) == 5


async def test_a_cancelled_enqueue_leaves_its_group_and_the_next_enqueues_working(
    spool_path: Path, anyio_backend: str
) -> None:
    await e2e.add.enqueue(0, 0)
    with anyio.CancelScope() as scope:
        scope.cancel()
        await e2e.add.enqueue(0, 1)  # cancelled before it began: nothing published
    assert len(pending(spool_path)) == 1

    # The first enqueue of a group is cancelled while the group waits to be written: by the
    # event loop's own means too (a server dropping a request, asyncio.wait_for).
    if anyio_backend == "asyncio":
        import asyncio

        tasks = [asyncio.ensure_future(e2e.add.enqueue(i, 1)) for i in range(8)]
        await anyio.wait_all_tasks_blocked()  # each has joined a group and waits for it
        tasks[0].cancel()
        ended = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(ended[0], asyncio.CancelledError)
    else:
        async with anyio.create_task_group() as tg:
            scopes = [anyio.CancelScope() for _ in range(8)]
            for i, each in enumerate(scopes):
                tg.start_soon(_enqueue_in, each, i)
            await anyio.wait_all_tasks_blocked()
            scopes[0].cancel()
    with anyio.fail_after(10):
        await e2e.add.enqueue(99, 1)
    # Every enqueue that joined a group was written, the cancelled one's included.
    assert len(pending(spool_path)) == 1 + 8 + 1
    assert os.listdir(spool_path / "tmp") == []


async def _enqueue_in(scope: anyio.CancelScope, i: int) -> None:
    with scope:
        await e2e.add.enqueue(i, 1)
