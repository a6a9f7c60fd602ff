"""The worker's job tasks keep a task group's structure on the event loop's own groups."""

from __future__ import annotations

import contextvars
from typing import Any

import anyio
import pytest

from jobq.jobtasks import job_tasks

pytestmark = pytest.mark.anyio

REQUEST = contextvars.ContextVar[str]("request", default="none")


async def test_the_group_waits_for_its_tasks_and_each_has_its_own_context() -> None:
    seen: dict[int, str] = {}

    async def job(number: int) -> None:
        REQUEST.set(f"job {number}")  # a job's context variables stay its own
        await anyio.sleep(0.01 * number)
        seen[number] = REQUEST.get()

    async with job_tasks() as spawn:
        for number in range(3):
            spawn(job, number)
    assert seen == {0: "job 0", 1: "job 1", 2: "job 2"}
    assert REQUEST.get() == "none"


class Started:
    """Counts tasks that have started; ``all(n)`` waits until ``n`` have."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = anyio.Event()

    def one(self) -> None:
        self.count += 1
        self._changed.set()
        self._changed = anyio.Event()

    async def all(self, n: int) -> None:
        while self.count < n:
            await self._changed.wait()


async def wait_forever(started: Started, ended: list[str]) -> None:
    """A job that runs until cancelled, and notes that it was."""
    try:
        started.one()
        await anyio.sleep_forever()
    finally:
        ended.append("cancelled")


async def test_a_task_that_raises_cancels_the_others_and_the_group_raises_it() -> None:
    started, ended = Started(), list[str]()

    async def fails(_: object) -> None:
        await started.all(1)
        raise LookupError("a bug")

    async def group() -> None:
        async with job_tasks() as spawn:
            spawn(lambda _: wait_forever(started, ended), None)
            spawn(fails, None)
            await anyio.sleep_forever()  # the host is cancelled too

    with pytest.raises(BaseExceptionGroup) as caught:
        await group()
    assert [type(e) for e in caught.value.exceptions] == [LookupError]
    assert ended == ["cancelled"]


async def test_cancelling_the_host_cancels_the_tasks() -> None:
    # A hard stop cancels the worker's outer anyio scope around the group.
    started, ended = Started(), list[str]()
    with anyio.CancelScope() as outer:
        async with job_tasks() as spawn:
            spawn(lambda _: wait_forever(started, ended), None)
            spawn(lambda _: wait_forever(started, ended), None)
            await started.all(2)
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert ended == ["cancelled", "cancelled"]


async def test_a_tasks_own_cancel_scope_stops_only_that_task() -> None:
    # A job's attempt runs under its own scope (``jobq cancel``, timeouts, the grace period).
    scopes: dict[str, anyio.CancelScope] = {}
    outcome: dict[str, Any] = {}
    started, release = Started(), anyio.Event()

    async def job(name: str) -> None:
        with anyio.CancelScope() as scope:
            scopes[name] = scope
            started.one()
            await release.wait()
            outcome[name] = "finished"
        if scope.cancelled_caught:
            outcome[name] = "interrupted"

    async with job_tasks() as spawn:
        spawn(job, "a")
        spawn(job, "b")
        await started.all(2)
        scopes["a"].cancel()
        release.set()
    assert outcome == {"a": "interrupted", "b": "finished"}
