"""When a small blocking spool step may run on the event loop's own thread.

jobq's blocking file work goes to a worker thread so that the event loop never waits on a disk.
For small steps on a fast local disk that hop costs more than the work: handing a call to a
thread and the result back took 100-150 µs here (two context switches, the GIL passed twice),
a non-durable publish 40-45 µs on tmpfs (docs/performance.md). So a single enqueue, a worker's
claim scan and its group commits run inline when the spool is on a local filesystem, is not
durable (durable calls wait for fsyncs, which a busy disk stretches to milliseconds), and
recent inline calls stayed within ``BUDGET``.

An inline call stalls the loop for its own duration. Every one is timed: a call that takes
longer than ``BUDGET`` and slept on the way (it waited for the disk, a lock or the GIL; one
that the scheduler merely preempted would have stalled the loop as long with a thread hop)
sends the next calls back to a thread for a while, after which one is tried inline again:
``FIRST_HOLD`` seconds after a quiet spell, four times as long as the last hold for an overrun
within ``REMEMBER`` seconds of the last one, up to ``HOLD``. So a disk that stalls once costs
one stall and a short detour, and a disk that keeps stalling costs three stalls in its first
second, then one a second.

While a call too big to go inline runs in a thread (``in_thread``: a worker's claim scan that
lists a deep queue, and any while its spool is failing or calls are held in threads), the
gate's other calls go to threads too: inline beside it, a call would take the GIL back from it
at each of its own system calls. A worker's group commit that overlapped its claim scan took
9-16 ms so, which sent its calls to threads for a second at a time, more than half of a deep
queue's drain (docs/performance.md). A smaller call in a thread (one that a hold or a big call
sent there) does not keep the others out: calls that overlap would keep each other in threads
for good. An inline call it slows down counts as any other; in a drain that happened once or
twice, against some sixty deep scans.

Batches (a group commit, a claim scan's claims) are limited so that each inline call takes
about half the budget (``batch_size``). Each inline call starts with a checkpoint, as a thread
hop does, so a loop of ``await job.enqueue(...)`` still lets other tasks run between jobs.

Failure story: nothing is written here; a call that raises inline raises the same error it
would have raised from a thread. As with a thread hop, a cancelled caller stops at the
checkpoint before the call, with nothing done, and a call that ran returns its result: no
checkpoint comes after it, where a cancellation could lose what it did (a published job).
A network filesystem, whose hung mount would freeze the loop, never goes inline; a worker
whose spool just failed sends its calls to threads until the spool answers again.
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
    """

    def __init__(self, allowed: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.allowed = allowed
        self._clock = clock
        self._threads_until = 0.0
        self._too_big = 0  # calls too big to go inline running in threads now (``in_thread``)
        self._hold = 0.0  # how long the last overrun sent calls to threads
        self._overran_at = -math.inf
        self._per_item = BUDGET / 8  # seconds an item of a batch took inline, smoothed

    @property
    def inline(self) -> bool:
        """Whether the next call runs on the loop's thread."""
        return self.allowed and not self._too_big and self._clock() >= self._threads_until

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
        if not self.inline:  # another task's call overran, or went to a thread, meanwhile
            return await anyio.to_thread.run_sync(fn)
        started, waits = self._clock(), _waits()
        try:
            result = fn()
        finally:
            ended = self._clock()
            # Only a call that waited (for a disk, a lock, the GIL) overran by its own doing:
            # callers keep their calls to about half the budget (``batch_size``), so one that
            # took longer without sleeping was preempted, which stalls the loop from a thread
            # too.
            if ended - started > BUDGET and (_RUSAGE_THREAD is None or _waits() != waits):
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

    async def in_thread(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a worker thread; until it returns, this gate's calls go to threads.

        For a call that must not go inline (a claim scan that lists a deep queue, and any
        while the spool is failing or calls are held in threads).

        An inline call beside it would take the GIL back from it at each of its own system
        calls: a group commit that overlapped a claim scan listing a deep queue in a thread
        took 9-16 ms so (140-270 sleeps of 50-70 µs), where in a thread it goes alongside.
        """
        self._too_big += 1
        try:
            return await anyio.to_thread.run_sync(fn)
        finally:
            self._too_big -= 1


def _waits() -> int:
    """How often this thread has gone to sleep waiting (voluntary context switches)."""
    if _RUSAGE_THREAD is None:
        return 0  # unknown here: every overrun counts (see ``InlineGate.call``)
    return resource.getrusage(_RUSAGE_THREAD).ru_nvcsw


@functools.lru_cache(maxsize=64)
def gate_for(root: str, durable: bool) -> InlineGate:
    """The process's gate for the spool at ``root`` (one per spool and durability)."""
    return InlineGate(not durable and local_filesystem(root))
