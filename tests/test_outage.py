"""Spool outages: a worker whose filesystem stops answering survives, and serves again after.

The outage is injected below the worker: while it lasts, every spool operation fails with
ENOTCONN, as a network filesystem's client reports a server it cannot reach (the multi-host
suite in ``tests/hosts`` does the same with a real GlusterFS volume and a cut network). The
tests check what an operator would: every job done exactly once in the records, one worker
process that never died, one line when the spool went away and one when it came back, and at
most one new worker id for an outage longer than the lease.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import jobq
from jobq import layout as L
from jobq.outage import Outage
from jobq.spool import SpoolDir

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

pytestmark = pytest.mark.anyio

ran: list[int] = []


@jobq.job(name="tests.outage.step")
async def step(x: int) -> int:
    ran.append(x)
    await anyio.sleep(0.02)
    return x


@jobq.job(name="tests.outage.slow")
async def slow(x: int) -> int:
    ran.append(x)
    await anyio.sleep(0.6)
    return x


# Every SpoolDir operation a worker uses on its hot path, its chores and its lease.
_PATCHED = (
    "claim", "commit", "requeue", "heartbeat", "register_worker", "pending_names",
    "scheduled_names", "promote_due_next", "running_jobs", "now", "read_file",
    "workers", "running_workers", "cancel_requests", "complete_commits", "collect_tmp",
)  # fmt: skip


class Partition:
    """Makes every patched spool operation fail with ENOTCONN while ``down`` is set."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.registered: list[str] = []  # worker ids that registered, in order

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Wrap the operations of ``SpoolDir``."""
        for name in _PATCHED:
            monkeypatch.setattr(SpoolDir, name, self._wrap(name, getattr(SpoolDir, name)))

    def _wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(spool: SpoolDir, *args: Any, **kwargs: Any) -> Any:
            if self.down.is_set():
                raise OSError(errno.ENOTCONN, os.strerror(errno.ENOTCONN), spool.root)
            result = func(spool, *args, **kwargs)
            if name == "register_worker":
                self.registered.append(args[0])
            return result

        return wrapper


@pytest.fixture
def partition(monkeypatch: pytest.MonkeyPatch) -> Iterator[Partition]:
    """A partition switch for this test's spool (off at the start)."""
    ran.clear()
    cut = Partition()
    cut.install(monkeypatch)
    yield cut
    cut.down.clear()
    ran.clear()


def _done_records(spool: Path) -> list[str]:
    return sorted(p.name for p in (spool / L.DONE / "default").glob("*.json"))


def _lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def _run_until(worker: jobq.Worker, done: Callable[[], bool], timeout: float) -> None:
    with anyio.fail_after(timeout):
        while not done():
            await anyio.sleep(0.05)
    worker.stop()


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "not-durable"])
async def test_short_outage_keeps_the_worker_and_its_id(
    spool_path: Path, partition: Partition, caplog: pytest.LogCaptureFixture, durable: bool
) -> None:
    """An outage shorter than the lease: claims pause, then go on under the same id. Not
    durable on a local disk, the claims and commits that fail run on the loop's thread."""
    caplog.set_level(logging.INFO, logger="jobq")
    worker = jobq.Worker(concurrency=4, lease=5.0, durable=durable)
    handles = await step.enqueue_many([(x,) for x in range(60)])

    async def cut_once() -> None:
        while len(ran) < 10:
            await anyio.sleep(0.01)
        partition.down.set()
        await anyio.sleep(1.0)
        partition.down.clear()

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        tg.start_soon(cut_once)
        await _run_until(worker, lambda: len(_done_records(spool_path)) == 60, 30)

    assert [await h.result(timeout=5) for h in handles] == list(range(60))
    assert sorted(ran) == list(range(60))  # none ran twice: no held job was handed back
    assert len(_done_records(spool_path)) == 60
    assert partition.registered == [worker.id]  # one identity throughout
    assert len(_lines(caplog, "spool unreachable")) == 1
    assert len(_lines(caplog, "spool reachable again")) == 1
    assert not list((spool_path / L.RUNNING).glob("*/*"))  # nothing left claimed


async def test_outage_past_the_lease_stops_held_jobs_and_rejoins_once(
    spool_path: Path, partition: Partition, caplog: pytest.LogCaptureFixture
) -> None:
    """Past the lease: the jobs it held are stopped, it re-registers under one new id once
    the spool answers, and every job ends done exactly once."""
    caplog.set_level(logging.INFO, logger="jobq")
    worker = jobq.Worker(concurrency=3, lease=1.0)
    handles = await slow.enqueue_many([(x,) for x in range(9)])
    first_id = worker.id

    async def cut_once() -> None:
        while len(ran) < 3:  # three jobs are running: the cut strands them
            await anyio.sleep(0.01)
        partition.down.set()
        await anyio.sleep(3.0)  # three leases: every retry of the registration fails
        partition.down.clear()

    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        tg.start_soon(cut_once)
        await _run_until(worker, lambda: len(_done_records(spool_path)) == 9, 30)

    assert sorted([await h.result(timeout=5) for h in handles]) == list(range(9))
    assert len(_done_records(spool_path)) == 9
    assert partition.registered[0] == first_id
    assert len(partition.registered) == 2, partition.registered  # one new id, no churn
    assert worker.id == partition.registered[1]
    assert len(_lines(caplog, "lost its lease")) == 1
    # The three jobs held at the cut were stopped, their outcomes discarded (others ran them).
    assert len(_lines(caplog, "outcome discarded")) == 3
    assert not list((spool_path / L.WORKERS).glob(f"{first_id}*"))  # the old id is gone
    assert not list((spool_path / L.RUNNING).glob("*/*"))


async def test_a_spool_that_fails_at_start_up_raises_its_own_error(
    spool_path: Path, partition: Partition
) -> None:
    """A worker that cannot register raises the spool's error itself, as a caller catches it
    (``SpoolError`` is an ``OSError``), not wrapped in an exception group."""
    await step.enqueue(1)  # the spool exists
    partition.down.set()
    with pytest.raises(OSError, match="not connected"):
        await jobq.Worker(lease=5.0).run(burst=True)
    assert ran == []


async def test_a_success_that_began_before_the_outage_does_not_end_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A claim scan in a thread may return after a commit beside it failed: its success is
    # from before the outage and must not log "reachable again" (then "unreachable" again).
    caplog.set_level(logging.INFO, logger="jobq")
    outage = Outage()
    began = time.monotonic() - 0.01  # the scan began a moment before the commit failed
    outage.failed("recording outcomes", OSError(errno.ENOTCONN, "Transport endpoint"))
    outage.recovered(began)
    assert outage.since is not None
    outage.recovered(time.monotonic())
    assert outage.since is None
    assert len(_lines(caplog, "spool unreachable")) == 1
    assert len(_lines(caplog, "spool reachable again")) == 1
