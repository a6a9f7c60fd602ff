"""A worker's sorted view of the pending directories, kept between claims.

Listing and sorting a deep ``pending/`` costs time proportional to its size (about 1 µs an
entry), so doing it before every few claims makes draining a big queue quadratic. The worker
lists once, claims from the sorted listing until it runs out, and lists again; a listing older
than ``max(MIN_AGE, COST_FACTOR * its cost)`` is dropped too, so a newly enqueued job of
higher priority waits at most that long behind the listed ones. Entries that another worker
claimed meanwhile simply lose their rename (cheap) and are skipped.
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
        return time.monotonic() - self._listed_at > self._max_age

    def relist(self) -> int:
        """List and sort every queue's pending directory; returns how many entries."""
        start = time.monotonic()
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
