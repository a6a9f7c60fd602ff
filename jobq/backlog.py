"""A worker's sorted view of the pending directories, kept between claims.

Listing and sorting a deep ``pending/`` costs time proportional to its size (about 1 µs an
entry), so doing it before every few claims makes draining a big queue quadratic. The worker
lists once, claims from the sorted listing until it runs out, and lists again; a listing older
than ``max(MIN_AGE, COST_FACTOR * its cost)`` is dropped too, so a newly enqueued job of
higher priority waits at most that long behind the listed ones. Entries that another worker
claimed meanwhile simply lose their rename (cheap) and are skipped.

Where trusted file events tell of every job that lands (``jobq.waiting``: a local
filesystem), a listing is only dropped for its age if a job landed since it was made (or
after ``QUIET_AGE``, a net for a lost event): a worker draining a deep queue that nobody adds
to lists it once, not every few tenths of a second (each of two workers listed a queue of
20,000 jobs 13-14 times while draining it, 22 ms a listing).
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ("Backlog",)

#: A listing is refreshed after at least this many seconds...
MIN_AGE = 0.2
#: ...or after this many times what it cost to make, whichever is longer.
COST_FACTOR = 20.0
#: With trusted file events and no job landed since, a listing is refreshed after this long.
QUIET_AGE = 10.0


class Backlog:
    """Pending job file names of several queues in claim order, listed lazily.

    Args:
        list_names: returns the unsorted pending file names of one queue.
        queues: the queues to list.
    """

    def __init__(self, list_names: Callable[[str], list[str]], queues: Sequence[str]) -> None:
        self._list_names = list_names
        self._queues = list(queues)
        self._entries: deque[tuple[str, str]] = deque()
        self._listed_at = 0.0
        self._max_age = MIN_AGE
        #: Seconds the last listing took (None before the first): what the next may cost.
        self.cost: float | None = None
        #: Whether ``arrived`` is told of every job that lands (trusted file events).
        self.events_trusted = False
        self._arrivals = 0
        self._arrivals_listed = 0  # ``_arrivals`` when the kept listing was started

    def arrived(self) -> None:
        """A job may have landed in a listed directory (a file event; from the event loop)."""
        self._arrivals += 1

    def invalidate(self) -> None:
        """Forget the listing (e.g. scheduled jobs were just promoted into pending)."""
        self._entries.clear()

    def refresh_if_stale(self) -> None:
        """Drop a listing that is too old to trust for priority order."""
        if self._stale():
            self._entries.clear()

    def needs_listing(self) -> bool:
        """Whether the next claim needs a listing first (none kept, or too old to trust)."""
        return not self._entries or self._stale()

    def _stale(self) -> bool:
        age = time.monotonic() - self._listed_at
        if age <= self._max_age:
            return False
        if not self.events_trusted:
            return True
        return self._arrivals != self._arrivals_listed or age > QUIET_AGE

    def relist(self) -> int:
        """List and sort every queue's pending directory; returns how many entries."""
        start = time.monotonic()
        # Read before listing: a job that lands during the listing makes it stale.
        self._arrivals_listed = self._arrivals
        found = [(name, queue) for queue in self._queues for name in self._list_names(queue)]
        found.sort()
        self._entries = deque(found)
        self._listed_at = time.monotonic()
        self.cost = self._listed_at - start
        self._max_age = max(MIN_AGE, COST_FACTOR * self.cost)
        return len(found)

    def skip(self, count: int) -> None:
        """Drop the next ``count`` entries (another worker is claiming them)."""
        for _ in range(min(count, len(self._entries))):
            self._entries.popleft()

    def pop(self) -> tuple[str, str] | None:
        """The next (file name, queue) to try, or None when the listing is used up."""
        return self._entries.popleft() if self._entries else None
