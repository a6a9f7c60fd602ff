"""The worker's kept listing of pending/: when it is listed again (``jobq.backlog``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

import anyio
import pytest

import jobq
from jobq import backlog
from jobq.backlog import Backlog

if TYPE_CHECKING:
    from pathlib import Path


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr("jobq.backlog.time", SimpleNamespace(monotonic=fake))
    return fake


def listed(names: dict[str, list[str]]) -> tuple[Backlog, list[str]]:
    calls: list[str] = []

    def list_names(queue: str) -> list[str]:
        calls.append(queue)
        return list(names[queue])

    return Backlog(list_names, list(names)), calls


def test_a_listing_is_claimed_in_order_across_queues(clock: Clock) -> None:
    kept, _ = listed({"a": ["20-x", "10-y"], "b": ["15-z"]})
    assert kept.needs_listing()
    assert kept.relist() == 3
    assert [kept.pop(), kept.pop(), kept.pop(), kept.pop()] == [
        ("10-y", "a"), ("15-z", "b"), ("20-x", "a"), None,
    ]  # fmt: skip


def test_without_trusted_events_an_old_listing_is_dropped(clock: Clock) -> None:
    kept, calls = listed({"q": ["1", "2", "3"]})
    kept.relist()
    clock.now += backlog.MIN_AGE / 2
    assert not kept.needs_listing()
    clock.now += backlog.MIN_AGE
    assert kept.needs_listing()
    kept.refresh_if_stale()
    assert kept.pop() is None  # dropped: the next claim lists again
    assert calls == ["q"]


def test_with_trusted_events_a_listing_lasts_until_a_job_lands(clock: Clock) -> None:
    kept, _ = listed({"q": ["1", "2", "3"]})
    kept.events_trusted = True
    kept.relist()
    clock.now += backlog.MIN_AGE * 5
    assert not kept.needs_listing()  # old, but nothing landed since: still the whole queue
    kept.arrived()
    assert kept.needs_listing()  # a job landed that the listing may not have
    kept.relist()
    kept.arrived()  # landed while young: kept until it is old enough, as without events
    assert not kept.needs_listing()
    clock.now += backlog.MIN_AGE * 2
    assert kept.needs_listing()


def test_a_job_landing_during_the_listing_makes_it_stale(clock: Clock) -> None:
    kept: Backlog

    def list_names(queue: str) -> list[str]:
        kept.arrived()  # the event of a job that landed after the directory was read
        return ["1"]

    kept = Backlog(list_names, ["q"])
    kept.events_trusted = True
    kept.relist()
    clock.now += backlog.MIN_AGE * 2
    assert kept.needs_listing()


def test_with_trusted_events_a_quiet_listing_is_still_refreshed_in_the_end(clock: Clock) -> None:
    kept, _ = listed({"q": ["1"]})
    kept.events_trusted = True
    kept.relist()
    clock.now += backlog.QUIET_AGE + 0.1
    assert kept.needs_listing()  # the net for a lost event


order: list[object] = []


@jobq.job(name="tests.backlog.low")
async def low(i: int) -> None:
    order.append(i)
    await anyio.sleep(0.01)


@jobq.job(name="tests.backlog.high", priority=9)
async def high() -> None:
    order.append("high")


@pytest.mark.anyio
async def test_a_job_that_lands_during_a_deep_drain_is_listed_soon(spool_path: Path) -> None:
    # The worker keeps its listing of 300 jobs while nothing lands; the file event of a new
    # higher-priority job makes it list again once the listing is old enough (0.2 s), not
    # after the 300 jobs (about 0.6 s here).
    order.clear()
    await low.enqueue_many([(i,) for i in range(300)])
    worker = jobq.Worker(spool_path, concurrency=5)

    async def add_high() -> None:
        with anyio.fail_after(30):
            while len(order) < 20:
                await anyio.sleep(0.005)
            await high.enqueue()
            while "high" not in order:
                await anyio.sleep(0.01)
        worker.stop()

    async with anyio.create_task_group() as tg:
        tg.start_soon(add_high)
        await worker.run()
    assert order.index("high") < 200
