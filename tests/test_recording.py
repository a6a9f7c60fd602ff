"""A job whose outcome is being recorded gives its slot back, within a bound.

A durable worker records outcomes in group commits that wait for fsyncs; meanwhile the next
jobs run. The tests stall the commits (the disk stops answering) and check what a user would:
no more job functions at once than ``concurrency``, no more than ``RECORDING_AHEAD`` jobs
waiting for their records, and every job recorded exactly once when the disk answers.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import jobq
from jobq import slots
from jobq.spool import SpoolDir

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from jobq.spool import Finish

pytestmark = pytest.mark.anyio

started: list[int] = []
running_now: list[int] = []
most_at_once = [0]


@jobq.job(name="tests.recording.quick")
async def quick(x: int) -> int:
    started.append(x)
    running_now.append(x)
    most_at_once[0] = max(most_at_once[0], len(running_now))
    await anyio.sleep(0.01)
    running_now.remove(x)
    return x


async def test_jobs_run_ahead_of_a_stalled_commit_within_a_bound(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started.clear()
    most_at_once[0] = 0
    disk = threading.Event()  # set: the disk answers
    commit = SpoolDir.commit

    def stalled_commit(self: SpoolDir, finishes: Sequence[Finish]) -> Any:
        disk.wait(30)
        return commit(self, finishes)

    monkeypatch.setattr(SpoolDir, "commit", stalled_commit)
    monkeypatch.setattr(slots, "RECORDING_AHEAD", 6)
    handles = [await quick.enqueue(i) for i in range(10)]
    worker = jobq.Worker(spool_path, concurrency=2, durable=True)  # commits in a thread

    async def watch() -> None:
        with anyio.fail_after(20):
            while len(started) < 6:
                await anyio.sleep(0.01)
        await anyio.sleep(0.3)  # long enough for a seventh job to start, were it allowed
        assert len(started) == 6  # 2 slots at a time, and 6 jobs at most held for records
        assert not any((spool_path / "done" / "default").glob("*.json"))
        disk.set()
        with anyio.fail_after(20):
            while worker.processed < 10:
                await anyio.sleep(0.01)
        worker.stop()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            await worker.run()
    finally:
        disk.set()
    assert sorted(started) == list(range(10))  # each once
    assert most_at_once[0] <= 2
    assert [await h.result(timeout=5) for h in handles] == list(range(10))


twice_runs: list[int] = []


@jobq.job(name="tests.recording.twice", retries=1, retry_delay=0)
async def twice(x: int) -> int:
    twice_runs.append(x)
    return x


async def test_a_burst_worker_waits_for_a_record_that_may_send_its_job_back(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first attempt's record cannot be written (twice: the batch, then alone): the
    # attempt fails and its retry goes back to pending after the slot was freed. A burst
    # worker must not take the empty queue it saw meanwhile for the end of its work.
    twice_runs.clear()
    refusals = [2]
    commit = SpoolDir.commit

    def full_disk(self: SpoolDir, finishes: Sequence[Finish]) -> Any:
        if refusals[0] > 0:
            refusals[0] -= 1
            time.sleep(0.2)  # a slow disk: the worker has looked at the empty queue meanwhile
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return commit(self, finishes)

    monkeypatch.setattr(SpoolDir, "commit", full_disk)
    handle = await twice.enqueue(7)
    await jobq.Worker(spool_path, durable=True).run(burst=True)  # commits in a thread
    assert twice_runs == [7, 7]
    assert await handle.result(timeout=1) == 7
