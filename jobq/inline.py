"""When a small blocking spool step may run on the event loop's own thread.

jobq's blocking file work goes to a worker thread so that the event loop never waits on a disk.
For small steps on a fast local disk that hop costs more than the work: handing a call to a
thread and the result back took 100-150 µs here (two context switches, the GIL passed twice), a
non-durable publish 40-45 µs on tmpfs (docs/performance.md). So a single enqueue, a worker's
claim scan and its group commits run inline when the spool is on a local filesystem, is not
durable (durable calls wait for fsyncs, which a busy disk stretches to milliseconds), and
recent inline calls stayed within ``BUDGET``.

An inline call stalls the loop for its own duration. Every one is timed: a call that takes
longer than ``BUDGET`` because it waited for the disk sends the next calls back to a thread for
a while, after which one is tried inline again: ``FIRST_HOLD`` seconds after a quiet spell,
four times as long as the last hold for an overrun within ``REMEMBER`` seconds of the last one,
up to ``HOLD``. So a disk that stalls once costs one stall and a short detour, and a disk that
keeps stalling costs three stalls in its first second, then one a second. Two kinds of slowness
do not count, because a thread hop would not have spared the loop either: a call the scheduler
merely preempted (it never slept), and a call that handed the GIL back and forth with another
thread of the process. Each system call lets go of the GIL, so a call that overlaps, say, a
claim scan in a thread waits for it many times, briefly each time; a disk wait is one long
sleep. So what counts is the call's time off the CPU (by this thread's CPU clock) per voluntary
sleep: over half the budget on average. (Counting GIL waits cost a worker draining a deep queue
14-28% of its speed: a claim scan in a thread slowed an inline group commit to 9-16 ms, 140-270
sleeps of 50-70 µs, and so sent its calls to threads for a second at a time, more than half of
the drain; docs/performance.md.) A thread that computes without system calls holds the GIL for
whole switch intervals (5 ms): waits that long count, and rightly, since one thread hop waits
once where an inline call would wait at each of its system calls.

Batches (a group commit, a claim scan's claims) are limited so that each inline call takes
about half the budget (``batch_size``). Each inline call starts with a checkpoint, as a thread
hop does, so a loop of ``await job.enqueue(...)`` still lets other tasks run between jobs.

Failure story: nothing is written here; a call that raises inline raises the same error it
would have raised from a thread. As with a thread hop, a cancelled caller stops at the
checkpoint before the call, with nothing done, and a call that ran returns its result: no
checkpoint comes after it, where a cancellation could lose what it did (a published job). A
network filesystem, whose hung mount would freeze the loop, never goes inline; a worker whose
spool just failed sends its calls to threads until the spool answers again.
"""

from __future__ import annotations

import functools
import math
import time
from typing import TYPE_CHECKING, TypeVar

import anyio
import anyio.lowlevel

from jobq.waiting import local_filesystem

try:
    import resource
except ImportError:  # pragma: no cover - not on Unix
    resource = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("BUDGET", "FIRST_HOLD", "HOLD", "REMEMBER", "InlineGate", "gate_for")

T = TypeVar("T")

#: Longest an inline call may stall the event loop before calls go back to threads (seconds).
BUDGET = 0.001

#: How long calls stay in threads after an overrun that follows a quiet spell (seconds).
FIRST_HOLD = 0.05

#: The longest calls stay in threads after an overrun (seconds).
HOLD = 1.0

#: An overrun within this many seconds of the last one holds four times as long as that one.
REMEMBER = 10.0

_RUSAGE_THREAD: int | None = getattr(resource, "RUSAGE_THREAD", None)  # Linux only


class InlineGate:
    """Runs a spool's small blocking calls inline while that stays cheap, else in a thread.

    Args:
        allowed: whether inline calls are allowed at all (local filesystem, not durable).
        clock: monotonic seconds (tests pass their own).
        cpu_clock: the calling thread's CPU seconds (tests pass their own).
    """

    def __init__(
        self,
        allowed: bool,
        clock: Callable[[], float] = time.monotonic,
        cpu_clock: Callable[[], float] = time.thread_time,
    ) -> None:
        self.allowed = allowed
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._threads_until = 0.0
        self._hold = 0.0  # how long the last overrun sent calls to threads
        self._overran_at = -math.inf
        self._per_item = BUDGET / 8  # seconds an item of a batch took inline, smoothed

    @property
    def inline(self) -> bool:
        """Whether the next call runs on the loop's thread."""
        return self.allowed and self._clock() >= self._threads_until

    def batch_size(self) -> int:
        """How many items of a batch one inline call should take: half the budget's worth.

        A caller with a batch (a group commit) splits it so, one ``call`` per part, and
        passes each part's size as ``items``; in a thread the batch goes whole.
        """
        return max(1, int(BUDGET / 2 / self._per_item))

    async def call(self, fn: Callable[[], T], *, items: int | None = None) -> T:
        """Run ``fn`` inline (after yielding to the loop once) or in a worker thread.

        Args:
            items: how many items of a batch ``fn`` handles; such calls (and only they) teach
                ``batch_size`` what one item costs.
        """
        if not self.inline:
            return await anyio.to_thread.run_sync(fn)
        await anyio.lowlevel.checkpoint()
        if not self.inline:  # another task's call overran meanwhile
            return await anyio.to_thread.run_sync(fn)
        started, waits, cpu = self._clock(), _waits(), self._cpu_clock()
        try:
            result = fn()
        finally:
            ended = self._clock()
            if ended - started > BUDGET and self._waited_for_disk(ended - started, waits, cpu):
                self._overran(ended)
            if items is not None:
                self._per_item += ((ended - started) / max(1, items) - self._per_item) / 8
        return result

    def _overran(self, now: float) -> None:
        """Send the calls of the next while to threads (see the module's docstring)."""
        recent = now - self._overran_at <= REMEMBER
        self._hold = min(HOLD, self._hold * 4) if recent else FIRST_HOLD
        self._overran_at = now
        self._threads_until = now + self._hold

    def _waited_for_disk(self, took: float, waits: int, cpu: float) -> bool:
        """Whether a call that took ``took`` s overran by long waits, as for a disk.

        Callers keep their calls to about half the budget (``batch_size``), so one that took
        longer without sleeping was preempted. One that slept many times, briefly each time
        (its time off the CPU spread over its waits, under half the budget each on average),
        was handing the GIL back and forth with a thread of this process that makes system
        calls too.
        """
        if _RUSAGE_THREAD is None:
            return True  # waits cannot be told apart here: every overrun counts
        slept = _waits() - waits
        if slept == 0:
            return False
        return (took - (self._cpu_clock() - cpu)) / slept > BUDGET / 2


def _waits() -> int:
    """How often this thread has gone to sleep waiting (voluntary context switches)."""
    if _RUSAGE_THREAD is None:
        return 0  # unknown here: every overrun counts (see ``InlineGate.call``)
    return resource.getrusage(_RUSAGE_THREAD).ru_nvcsw


@functools.lru_cache(maxsize=64)
def gate_for(root: str, durable: bool) -> InlineGate:
    """The process's gate for the spool at ``root`` (one per spool and durability)."""
    return InlineGate(not durable and local_filesystem(root))
