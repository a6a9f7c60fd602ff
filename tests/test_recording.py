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
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import jobq
from jobq import slots
from jobq.spool import SpoolDir

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from jobq.claiming import Scan
    from jobq.spool import Finish

pytestmark = pytest.mark.anyio


def _before_commits(monkeypatch: pytest.MonkeyPatch, before: Callable[[], object]) -> None:
    """Make every group commit call ``before`` first (it may stall, or raise)."""
    commit = SpoolDir.commit

    def slow_disk(self: SpoolDir, finishes: Sequence[Finish]) -> Any:
        before()
        return commit(self, finishes)

    monkeypatch.setattr(SpoolDir, "commit", slow_disk)


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
    _before_commits(monkeypatch, lambda: disk.wait(30))
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
    looked = threading.Event()  # set: a scan found the queue empty, nothing due soon
    scan = jobq.Worker._scan

    async def scan_and_tell(self: jobq.Worker, free: int) -> tuple[Scan, int]:
        found = await scan(self, free)
        if not found[0].claimed and not found[0].more_later:
            # The queue looks finished. The loop decides on this scan before it can see the
            # record fail (that needs the loop), as it would after a slow disk.
            looked.set()
        return found

    def full_disk() -> None:
        if refusals[0] > 0:
            refusals[0] -= 1
            looked.wait(30)  # the worker has seen the empty queue while the record waits
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(jobq.Worker, "_scan", scan_and_tell)
    _before_commits(monkeypatch, full_disk)
    handle = await twice.enqueue(7)
    await jobq.Worker(spool_path, durable=True).run(burst=True)  # commits in a thread
    assert twice_runs == [7, 7]
    assert await handle.result(timeout=1) == 7
