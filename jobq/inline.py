"""When a small blocking spool step may run on the event loop's own thread.

jobq's blocking file work goes to a worker thread so that the event loop never waits on a disk.
For one non-durable job on a local disk that hop costs more than the work: handing the call to a
thread and the result back took 60-80 µs here (two context switches, the GIL passed twice),
the publish itself about as much (docs/performance.md). So such a call runs inline when the
spool is on a local filesystem, is not durable (durable publishes wait for two fsyncs, which a
busy disk stretches to milliseconds), and recent inline calls stayed within ``BUDGET``.

An inline call stalls the loop for its own duration. Every one is timed: a call that takes
longer than ``BUDGET`` sends the calls of the next ``HOLD`` seconds back to a thread, after
which one is tried inline again. Each inline call ends with a checkpoint, so a loop of
``await job.enqueue(...)`` still lets other tasks run between jobs.

Failure story: nothing is written here; a call that raises inline raises the same error it
would have raised from a thread.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel

from jobq.waiting import local_filesystem

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("BUDGET", "HOLD", "InlineGate", "gate_for")

T = TypeVar("T")

#: Longest an inline call may stall the event loop before calls go back to threads (seconds).
BUDGET = 0.001

#: How long calls stay in threads after an inline call overran ``BUDGET`` (seconds).
HOLD = 1.0


class InlineGate:
    """Runs a spool's small blocking calls inline while that stays cheap, else in a thread.

    Args:
        allowed: whether inline calls are allowed at all (local filesystem, not durable).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, allowed: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.allowed = allowed
        self._clock = clock
        self._threads_until = 0.0

    @property
    def inline(self) -> bool:
        """Whether the next call runs on the loop's thread."""
        return self.allowed and self._clock() >= self._threads_until

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` inline (then yield to the loop once) or in a worker thread."""
        if not self.inline:
            return await anyio.to_thread.run_sync(fn)
        started = self._clock()
        try:
            return fn()
        finally:
            ended = self._clock()
            if ended - started > BUDGET:
                self._threads_until = ended + HOLD
            await anyio.lowlevel.checkpoint()


@functools.lru_cache(maxsize=64)
def gate_for(root: str, durable: bool) -> InlineGate:
    """The process's gate for the spool at ``root`` (one per spool and durability)."""
    return InlineGate(not durable and local_filesystem(root))
