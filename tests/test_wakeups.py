"""Wake-ups and batches: file events wake idle workers and waiting results, polling still works
without them, and no woken or batched path loses, repeats or half-publishes a job.

The wake-up tests make the safety-net poll an hour long, so a job that is only found by
polling would time out: they prove the event path, with generous deadlines, not its speed.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import jobq
import jobq.backlog
import jobq.claiming
import jobq.inline
from jobq import waiting
from jobq.spool import Finish, SpoolDir

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from anyio.abc import TaskGroup

pytestmark = pytest.mark.anyio

ran: list[int] = []  # inputs of the jobs that ran, in order


@jobq.job(name="tests.wakeups.square")
async def square(x: int) -> int:
    ran.append(x)
    return x * x


@jobq.job(name="tests.wakeups.cube")
def cube(x: int) -> int:
    ran.append(x)
    return x * x * x


@pytest.fixture(autouse=True)
def _fresh_runs() -> Iterator[None]:
    ran.clear()
    yield
    ran.clear()


@pytest.fixture(params=[True, False], ids=["durable", "not-durable"])
def durability(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways: a non-durable spool on a local disk claims and commits on the loop's thread
    (``jobq.inline``), a durable one in threads."""
    durable = bool(request.param)
    monkeypatch.setattr(jobq.config, "_configured_durable", durable)
    return durable


@pytest.fixture
def no_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the safety-net poll an hour: only a file event can wake a waiter in time."""
    monkeypatch.setattr(waiting, "TRUSTED_POLL", 3600.0)
    monkeypatch.delenv(waiting.NO_WATCH_ENV, raising=False)


def _events_here(path: Path) -> bool:
    return waiting.events_enabled() and waiting.local_filesystem(str(path))


def _leftovers(spool: Path) -> list[str]:
    """Job files still pending, scheduled, running or staged."""
    found = []
    for pattern in ("queues/*/pending/*", "queues/*/scheduled/*", "running/*/*", "tmp/*"):
        found += [str(p) for p in spool.glob(pattern)]
    return found


async def _serve(tg: TaskGroup, *workers: jobq.Worker) -> None:
    """Start the workers and return once each has registered in the spool."""
    for worker in workers:
        tg.start_soon(worker.run)
    registered = {f"{w.id}.json" for w in workers}
    directory = os.path.join(workers[0].spool.root, "workers")
    with anyio.fail_after(10):
        while not (os.path.isdir(directory) and registered <= set(os.listdir(directory))):
            await anyio.sleep(0.005)


async def test_idle_worker_and_result_wake_on_events(spool_path: Path, no_poll: None) -> None:
    if not _events_here(spool_path):
        pytest.skip("no inotify on this filesystem")
    worker = jobq.Worker(concurrency=4)
    async with anyio.create_task_group() as tg:
        await _serve(tg, worker)
        for x in range(5):
            await anyio.sleep(0.02)  # the fault: each job arrives at an idle worker
            handle = await square.enqueue(x)
            assert await handle.result(timeout=10) == x * x
        # The sync waiter in a thread is woken too.
        handle = await cube.enqueue(3)
        assert await anyio.to_thread.run_sync(handle.result_sync, 10.0) == 27
        worker.stop()
    assert ran == [0, 1, 2, 3, 4, 3]


async def test_delayed_job_wakes_the_worker_when_due(spool_path: Path, no_poll: None) -> None:
    if not _events_here(spool_path):
        pytest.skip("no inotify on this filesystem")
    worker = jobq.Worker(concurrency=2)
    async with anyio.create_task_group() as tg:
        await _serve(tg, worker)
        handle = await square.options(delay=0.3).enqueue(7)
        assert await handle.result(timeout=10) == 49
        worker.stop()


@pytest.mark.parametrize("how", ["env", "option"])
async def test_polling_alone_runs_everything(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    if how == "env":
        monkeypatch.setenv(waiting.NO_WATCH_ENV, "1")
    watch = None if how == "env" else False
    subscribed: list[object] = []
    real = waiting._Hub.subscribe

    def counting(hub: waiting._Hub, *args: Any) -> Any:
        subscribed.append(args)
        return real(hub, *args)

    monkeypatch.setattr(waiting._Hub, "subscribe", counting)
    worker = jobq.Worker(concurrency=3, watch=watch)
    async with anyio.create_task_group() as tg:
        await _serve(tg, worker)
        handles = [await square.enqueue(x) for x in range(10)]
        handles += await cube.enqueue_many([(x,) for x in range(10, 15)])
        results = [await h.result(timeout=10) for h in handles[:10]]
        results += [await anyio.to_thread.run_sync(h.result_sync, 10.0) for h in handles[10:]]
        worker.stop()
    assert results == [x * x for x in range(10)] + [x**3 for x in range(10, 15)]
    if how == "env":
        assert subscribed == []  # nobody watched: every wake-up came from polling
    else:
        assert len(subscribed) == len(handles)  # only the result() waiters watched


async def test_wakeups_never_lose_or_repeat_a_job(spool_path: Path, durability: bool) -> None:
    """Producers at random moments (single, batched, delayed) against two small workers that
    race for the same names: every job runs exactly once and nothing is left behind."""
    rng = random.Random(4)
    first, second = jobq.Worker(concurrency=3), jobq.Worker(concurrency=2)
    sent: list[tuple[jobq.JobHandle[int], int]] = []

    async def produce(base: int) -> None:
        for i in range(12):
            await anyio.sleep(rng.random() * 0.01)
            x = base + 10 * i
            if i % 4 == 0:
                batch = await square.enqueue_many([(x + k,) for k in range(5)])
                sent.extend(zip(batch, range(x, x + 5), strict=True))
            elif i % 4 == 1:
                sent.append((await square.options(delay=rng.random() * 0.05).enqueue(x), x))
            else:
                sent.append((await square.enqueue(x), x))

    async with anyio.create_task_group() as tg:
        await _serve(tg, first, second)
        async with anyio.create_task_group() as producers:
            for base in range(0, 4000, 1000):
                producers.start_soon(produce, base)
        with anyio.fail_after(30):
            results = [await h.result() for h, _ in sent]
        first.stop()
        second.stop()
    assert len(sent) == 4 * (3 * 5 + 9)
    assert results == [x * x for _, x in sent]
    assert sorted(ran) == sorted(x for _, x in sent)  # each ran once
    assert first.processed + second.processed == len(sent)
    assert _leftovers(spool_path) == []


async def test_deep_queue_drains_in_priority_order(spool_path: Path, durability: bool) -> None:
    """The kept listing (backlog) claims in the same order as a fresh scan each time."""
    rng = random.Random(9)
    calls = list(range(300))
    priorities = {x: rng.randint(-3, 3) for x in calls}
    for x in calls:
        await square.options(priority=priorities[x]).enqueue(x)
    await jobq.Worker(concurrency=1).run(burst=True)
    # Higher priority first; within a priority, enqueue order.
    assert ran == sorted(calls, key=lambda x: (-priorities[x], x))


async def test_backlog_skips_names_another_worker_took(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch, durability: bool
) -> None:
    """A name listed earlier but claimed by someone else since is skipped, not lost."""
    monkeypatch.setattr(jobq.backlog, "MIN_AGE", 3600.0)  # the stale listing stays in use
    handles = await square.enqueue_many([(x,) for x in range(40)])
    stale = jobq.Worker(concurrency=1)
    await anyio.to_thread.run_sync(stale._claimer.backlog.relist)  # lists all 40 now
    await jobq.Worker(concurrency=5).run(burst=True)  # another worker takes them all
    handles += await square.enqueue_many([(x,) for x in range(40, 45)])
    await stale.run(burst=True)
    assert sorted(ran) == list(range(45))
    assert [await h.result(timeout=5) for h in handles] == [x * x for x in range(45)]
    assert _leftovers(spool_path) == []


# -- batches that fail halfway ---------------------------------------------------------------


def _failing_syncfs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []

    def fail(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(jobq.spool.files, "_syncfs", fail)
    monkeypatch.setattr(jobq.spool.files, "_syncfs_usable", lambda root: True)
    return calls


def test_failed_shared_sync_publishes_nothing(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    square.enqueue_sync(0)  # the spool and queue exist
    pending = sorted(os.listdir(spool_path / "queues" / "default" / "pending"))
    calls = _failing_syncfs(monkeypatch)
    with pytest.raises(jobq.SpoolError):
        anyio.run(square.enqueue_many, [(x,) for x in range(1, 6)])
    assert calls, "the batch did not share one sync"
    assert sorted(os.listdir(spool_path / "queues" / "default" / "pending")) == pending
    assert os.listdir(spool_path / "tmp") == []


def test_single_enqueue_whose_directory_sync_fails_is_taken_back(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reported as failed, so not left behind for a worker to run."""
    square.enqueue_sync(0)  # the spool and queue exist
    pending = sorted(os.listdir(spool_path / "queues" / "default" / "pending"))

    def fail(self: SpoolDir, directory: str, *, always: bool = False) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(SpoolDir, "fsync_dir", fail)
    with pytest.raises(jobq.SpoolError, match="Input/output error"):
        square.enqueue_sync(1)
    assert sorted(os.listdir(spool_path / "queues" / "default" / "pending")) == pending
    assert os.listdir(spool_path / "tmp") == []


def test_failed_shared_sync_commits_nothing(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = SpoolDir(spool_path)
    handles = anyio.run(square.enqueue_many, [(x,) for x in range(3)])
    os.makedirs(spool.running_dir("w1"))
    claimed = [
        spool.claim("w1", "default", name)
        for name in sorted(os.listdir(spool_path / "queues" / "default" / "pending"))
    ]
    assert all(claimed)
    finishes = [
        Finish(held.path, "default", held.job_id, "done", b'{"state": "done"}')
        for held in claimed
        if held is not None
    ]
    calls = _failing_syncfs(monkeypatch)
    with pytest.raises(jobq.SpoolError):
        spool.commit(finishes)
    assert calls
    # Nothing recorded, every job still held by its worker, nothing staged left over.
    assert os.listdir(spool_path / "done" / "default") == []
    assert len(os.listdir(spool_path / "running" / "w1")) == len(handles)
    assert os.listdir(spool_path / "tmp") == []


def test_a_waiter_is_woken_in_a_directory_made_again(tmp_path: Path, no_poll: None) -> None:
    """A watch kept for the next waiter must not outlive its directory."""
    if not _events_here(tmp_path):
        pytest.skip("no inotify on this filesystem")
    box = tmp_path / "box"
    for round_ in range(3):
        box.mkdir()
        woke = threading.Event()
        with waiting.watching([str(box)], woke.set) as live:
            assert live
            (box / f"f{round_}").write_text("x")
            assert woke.wait(5), f"round {round_}: no wake-up"
        (box / f"f{round_}").unlink()
        box.rmdir()


def test_an_idle_watch_is_dropped_after_it_lingered(
    tmp_path: Path, no_poll: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not _events_here(tmp_path):
        pytest.skip("no inotify on this filesystem")
    monkeypatch.setattr(waiting, "LINGER", 0.0)
    hub = waiting._get_hub()
    assert hub is not None
    before = set(hub._watches)
    woke = threading.Event()
    with waiting.watching([str(tmp_path)], woke.set):
        watched = set(hub._watches) - before
        assert watched
        (tmp_path / "a").write_text("x")
        assert woke.wait(5)
    assert watched <= set(hub._watches)  # kept for the next waiter
    (tmp_path / "b").write_text("x")  # an event for nobody: the idle watch goes
    for _ in range(500):
        if not watched & set(hub._watches):
            break
        threading.Event().wait(0.01)
    assert not watched & set(hub._watches)


async def test_inline_scans_that_claim_one_job_each_drain_everything(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inline scan claims at most a part's worth; the worker then looks again at once."""
    monkeypatch.setattr(jobq.config, "_configured_durable", False)
    monkeypatch.setattr(jobq.inline.InlineGate, "batch_size", lambda self: 1)
    limits: list[int] = []
    real_scan = jobq.claiming.Claimer.scan

    def scan(self: Any, worker_id: str, limit: int, *args: Any, **kwargs: Any) -> Any:
        limits.append(limit)
        return real_scan(self, worker_id, limit, *args, **kwargs)

    monkeypatch.setattr(jobq.claiming.Claimer, "scan", scan)
    handles = await square.enqueue_many([(x,) for x in range(30)])
    await jobq.Worker(concurrency=6).run(burst=True)
    assert 1 in limits  # inline scans ran, capped below the free slots
    assert sorted(ran) == list(range(30))
    assert [await h.result(timeout=5) for h in handles] == [x * x for x in range(30)]
    assert _leftovers(spool_path) == []
