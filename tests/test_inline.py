"""Small non-durable spool calls run on the event loop's thread while that stays cheap."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import jobq
import jobq.api
import jobq.inline
from jobq.inline import BUDGET, FIRST_HOLD, HOLD, REMEMBER, InlineGate, gate_for

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.anyio


class Clock:
    """A monotonic clock that a call can move forward, as a slow disk would."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_slow_inline_call_sends_the_next_calls_to_a_thread() -> None:
    clock = Clock()
    gate = InlineGate(True, clock)
    loop_thread = threading.get_ident()
    seen: list[bool] = []

    def step(cost: float, *, waits: bool = True) -> None:
        seen.append(threading.get_ident() == loop_thread)
        if waits:
            time.sleep(0.001)  # a real wait, as for a disk
        clock.now += cost

    await gate.call(lambda: step(BUDGET / 2))
    await gate.call(lambda: step(BUDGET * 3, waits=False))  # preempted, not its doing
    await gate.call(lambda: step(BUDGET / 2))
    await gate.call(lambda: step(BUDGET * 3))  # overran waiting: the loop stalled too long
    await gate.call(lambda: step(0.0))
    clock.now += HOLD
    await gate.call(lambda: step(0.0))
    assert seen == [True, True, True, True, False, True]


async def test_while_a_call_runs_in_a_thread_the_others_go_to_threads_too() -> None:
    """Inline beside a thread's call, a call would trade the GIL with it at each system call."""
    gate = InlineGate(True, Clock())
    loop_thread = threading.get_ident()
    release = threading.Event()
    started = anyio.Event()

    def in_a_thread() -> int:
        anyio.from_thread.run_sync(started.set)
        release.wait(10)
        return threading.get_ident()

    async with anyio.create_task_group() as tg:
        seen: list[int] = []

        async def long_call() -> None:
            seen.append(await gate.in_thread(in_a_thread))

        tg.start_soon(long_call)
        await started.wait()
        assert not gate.inline
        assert await gate.call(threading.get_ident) != loop_thread
        release.set()
    assert seen != [loop_thread]
    assert gate.inline
    assert await gate.call(threading.get_ident) == loop_thread


async def test_holds_grow_while_overruns_repeat_and_start_small_after_a_quiet_spell() -> None:
    """A stalling disk soon keeps calls in threads for a second; a lone stall, for 50 ms."""
    clock = Clock()
    gate = InlineGate(True, clock)
    loop_thread = threading.get_ident()

    def stall() -> None:
        time.sleep(0.001)
        clock.now += BUDGET * 3

    async def inline_after(seconds: float, fn: Callable[[], None] = lambda: None) -> bool:
        clock.now += seconds
        seen: list[bool] = []

        def call() -> None:
            seen.append(threading.get_ident() == loop_thread)
            fn()

        await gate.call(call)
        return seen[0]

    assert await inline_after(0.0, stall)
    assert not await inline_after(FIRST_HOLD * 0.9)  # held for FIRST_HOLD
    assert await inline_after(FIRST_HOLD * 0.2, stall)  # the next overrun, soon after...
    assert not await inline_after(FIRST_HOLD * 3)  # ...holds four times as long
    assert await inline_after(FIRST_HOLD * 1.1, stall)
    assert not await inline_after(FIRST_HOLD * 15)  # 16 x FIRST_HOLD
    assert await inline_after(FIRST_HOLD * 1.1, stall)
    assert not await inline_after(HOLD * 0.9)  # capped at HOLD
    assert await inline_after(HOLD * 0.2)
    assert await inline_after(REMEMBER, stall)  # after a quiet spell...
    assert not await inline_after(FIRST_HOLD * 0.5)
    assert await inline_after(FIRST_HOLD * 0.6)  # ...a short hold again


async def test_batches_are_split_to_fit_the_budget() -> None:
    clock = Clock()
    gate = InlineGate(True, clock)

    def commit(n: int) -> None:
        clock.now += n * BUDGET / 10  # each item costs a tenth of the budget

    for _ in range(40):
        await gate.call(lambda: commit(gate.batch_size()), items=gate.batch_size())
    # A part costs at most half the budget, and not much less.
    assert BUDGET / 4 <= gate.batch_size() * BUDGET / 10 <= BUDGET / 2


async def test_a_gate_that_is_not_allowed_always_uses_a_thread() -> None:
    gate = InlineGate(False)
    loop_thread = threading.get_ident()
    assert await gate.call(threading.get_ident) != loop_thread


@pytest.mark.parametrize(
    ("durable", "local", "inline"),
    [(False, True, True), (True, True, False), (False, False, False)],
)
def test_only_non_durable_local_spools_go_inline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool, local: bool, inline: bool
) -> None:
    monkeypatch.setattr(jobq.inline, "local_filesystem", lambda path: local)
    spool = tmp_path / "spool"
    spool.mkdir()
    assert gate_for(str(spool), durable).inline is inline


@jobq.job(name="tests.inline.noop")
async def noop(n: int) -> int:
    return n


async def test_a_loop_of_inline_enqueues_lets_other_tasks_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = jobq.Spool(tmp_path / "spool", durable=False)
    job = spool.job(name="tests.inline.count")(noop)
    await anyio.to_thread.run_sync(job.enqueue_sync, 0)  # creates the queue's directories
    # A gate whose clock stands still never overruns: every enqueue below stays inline.
    gate = InlineGate(True, Clock())
    monkeypatch.setattr(jobq.api, "gate_for", lambda root, durable: gate)
    loop_thread = threading.get_ident()
    threads: list[int] = []
    real_publish = type(job)._publish

    def publish(self: Any, calls: Any, spool: Any = None) -> Any:
        threads.append(threading.get_ident())
        return real_publish(self, calls, spool)

    monkeypatch.setattr(type(job), "_publish", publish)
    ticks = 0
    done = anyio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.lowlevel.checkpoint()
        before = ticks
        handles = [await job.enqueue(i) for i in range(50)]
        during = ticks - before
        done.set()
    assert threads == [loop_thread] * 50  # all inline
    # Each enqueue yields once: the ticker ran between them, not only after the loop.
    assert during >= 25
    pending = tmp_path / "spool" / "queues" / "default" / "pending"
    assert len(list(pending.iterdir())) == 51
    assert len({h.id for h in handles}) == 50


async def test_where_waits_cannot_be_told_every_overrun_counts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jobq.inline, "_RUSAGE_THREAD", None)  # no per-thread rusage here
    clock = Clock()
    gate = InlineGate(True, clock)
    loop_thread = threading.get_ident()
    seen: list[bool] = []

    def step(cost: float) -> None:
        seen.append(threading.get_ident() == loop_thread)
        clock.now += cost

    await gate.call(lambda: step(BUDGET * 3))  # no wait, but no way to know it
    await gate.call(lambda: step(0.0))
    assert seen == [True, False]


@pytest.mark.parametrize("inline", [True, False])
async def test_cancelling_an_inline_call_is_cancelling_a_thread_hop(inline: bool) -> None:
    """Cancelled before it starts: nothing done. Cancelled while it runs: its result returns.

    A published job's handle must reach the caller, however the caller is cancelled.
    """
    gate = InlineGate(inline, Clock())
    done: list[int] = []
    scopes: list[anyio.CancelScope] = []

    loop_thread = threading.get_ident()

    def publish() -> int:
        done.append(1)
        # A cancellation that comes while the call runs.
        if threading.get_ident() == loop_thread:
            scopes[-1].cancel()
        else:
            anyio.from_thread.run_sync(scopes[-1].cancel)
        return 7

    got: list[int] = []
    with anyio.CancelScope() as early:
        scopes.append(early)
        early.cancel()
        got.append(await gate.call(publish))
    assert (done, got) == ([], [])  # stopped at the checkpoint before the call
    with anyio.CancelScope() as late:
        scopes.append(late)
        got.append(await gate.call(publish))
        await anyio.lowlevel.checkpoint()  # the cancellation lands here, after the result
        got.append(0)
    assert (done, got) == ([1], [7])
