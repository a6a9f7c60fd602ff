"""Throughput as the dashboard process measures it: finished jobs from successive counts.

The spool keeps no history, and reading the finish time of every record would not scale to a
million records, so the dashboard samples instead. Every time it reads ``spool_stats`` (a page,
a refresh poll, an ``/api/status`` call, a ``/metrics`` scrape, and a background sample every
few seconds) it hands the counts to ``Throughput.observe``, which adds each queue's growth of
``done`` and ``failed`` since the previous sample. A count that drops (``jobq purge``, a retry
taking a failed job back) adds nothing.

So the chart and the ``jobq_jobs_finished_total`` counters start at zero when the dashboard
starts (a Prometheus counter reset) and grow from there. Nothing is stored on disk.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("COUNTED_STATES", "Chart", "Throughput")

#: The states whose growth counts as finished jobs.
COUNTED_STATES = ("done", "failed")


@dataclass(frozen=True, slots=True)
class Chart:
    """Finished jobs per time bucket, oldest first, ready for a bar chart.

    Attributes:
        buckets: jobs finished in each bucket; the last one is the current bucket.
        bucket_seconds: the width of one bucket.
        measured_seconds: how long this process has been measuring (less than the window
            while it is young).
    """

    buckets: tuple[int, ...]
    bucket_seconds: float
    measured_seconds: float

    @property
    def peak(self) -> int:
        """The largest bucket (at least 1, so it can scale a chart)."""
        return max((1, *self.buckets))

    def per_minute(self, last_seconds: float = 300.0) -> float:
        """Average jobs finished per minute over the last ``last_seconds`` measured."""
        n = max(1, min(len(self.buckets), round(last_seconds / self.bucket_seconds)))
        span = min(n * self.bucket_seconds, max(self.measured_seconds, self.bucket_seconds))
        return sum(self.buckets[-n:]) * 60.0 / span


class Throughput:
    """Counts finished jobs per queue from successive ``spool_stats`` results; thread-safe.

    Args:
        window: how many seconds of history the chart keeps.
        bucket: the width of one chart bucket, in seconds.
        clock: the time source (seconds since the epoch).
    """

    def __init__(
        self, window: float = 900.0, bucket: float = 30.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.window = window
        self.bucket = bucket
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], int] = {}
        self._totals: dict[tuple[str, str], int] = {}
        self._events: deque[tuple[float, int]] = deque()
        self.started = clock()

    def observe(self, stats: dict[str, Any]) -> None:
        """Take one sample: ``stats`` as ``jobq.inspect.spool_stats`` returns it."""
        now = self._clock()
        finished = 0
        with self._lock:
            for queue, counts in stats.get("queues", {}).items():
                for state in COUNTED_STATES:
                    count = int(counts.get(state, 0))
                    key = (queue, state)
                    previous = self._last.get(key)
                    self._last[key] = count
                    self._totals.setdefault(key, 0)
                    if previous is not None and count > previous:
                        self._totals[key] += count - previous
                        finished += count - previous
            if finished:
                self._events.append((now, finished))
            while self._events and self._events[0][0] < now - self.window:
                self._events.popleft()

    def totals(self) -> dict[tuple[str, str], int]:
        """Jobs seen finishing since this process started, by (queue, state)."""
        with self._lock:
            return dict(self._totals)

    def chart(self) -> Chart:
        """The finished jobs of the last ``window`` seconds, bucketed."""
        now = self._clock()
        count = max(1, round(self.window / self.bucket))
        buckets = [0] * count
        with self._lock:
            events = list(self._events)
        for at, finished in events:
            age = int((now - at) // self.bucket)
            if 0 <= age < count:
                buckets[count - 1 - age] += finished
        return Chart(tuple(buckets), self.bucket, max(0.0, now - self.started))
