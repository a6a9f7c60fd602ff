"""``GET /metrics``: the spool in the Prometheus text format, read afresh on every scrape.

A custom prometheus_client collector calls ``jobq.inspect.spool_stats`` (names only, like
``jobq status``) and the pending listings for the oldest job's age; it keeps no state but the
dashboard's ``Throughput`` counters. Metrics:

- ``jobq_jobs{queue, state}`` (gauge): jobs per queue and state, every state the spool reports.
- ``jobq_workers`` (gauge): live workers (lease not expired).
- ``jobq_oldest_pending_age_seconds{queue}`` (gauge): age of the oldest pending job by its
  enqueue time (the time it was last queued), 0 when none is pending.
- ``jobq_jobs_finished_total{queue, state}`` (counter, ``state`` = ``done`` or ``failed``): jobs
  this dashboard process saw finish, from the growth of the counts between samples (see
  ``jobq.dashboard.throughput``); it starts at 0 with the process, so ``rate()`` gives
  throughput and a purge of old records does not look like a negative rate.
- ``jobq_invalid_files`` (gauge): quarantined files, when the spool reports them.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from jobq import inspect
from jobq.dashboard.listing import oldest_pending

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from prometheus_client.metrics_core import Metric

    from jobq.dashboard.throughput import Throughput
    from jobq.spool import SpoolDir

__all__ = ("SpoolCollector", "metrics_registry", "render")


class SpoolCollector:
    """A prometheus_client collector that reads the spool each time it is collected.

    Args:
        spool: the spool to describe.
        throughput: the dashboard's finished-jobs counters (fed with every scrape's counts).
        clock: the time source for ages (seconds since the epoch).
    """

    def __init__(
        self, spool: SpoolDir, throughput: Throughput, clock: Callable[[], float] = time.time
    ) -> None:
        self.spool = spool
        self.throughput = throughput
        self._clock = clock

    def describe(self) -> list[Metric]:
        """No metrics up front: a registry must not read the spool when this registers."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Read the spool and yield the jobq metric families."""
        stats = inspect.spool_stats(self.spool)
        self.throughput.observe(stats)
        jobs = GaugeMetricFamily(
            "jobq_jobs", "Jobs per queue and state.", labels=["queue", "state"]
        )
        oldest = GaugeMetricFamily(
            "jobq_oldest_pending_age_seconds",
            "Age of the oldest pending job (0 when none is pending).",
            labels=["queue"],
        )
        now = self._clock()
        for queue, counts in stats["queues"].items():
            for state, count in counts.items():
                jobs.add_metric([queue, state], float(count))
            enqueued = oldest_pending(self.spool, queue)
            oldest.add_metric([queue], max(0.0, now - enqueued) if enqueued is not None else 0.0)
        yield jobs
        yield GaugeMetricFamily(
            "jobq_workers", "Live workers (lease not expired).", value=len(stats["workers"])
        )
        yield oldest
        finished = CounterMetricFamily(
            "jobq_jobs_finished",
            "Jobs seen finishing (done or failed) since this dashboard started.",
            labels=["queue", "state"],
        )
        for (queue, state), total in sorted(self.throughput.totals().items()):
            finished.add_metric([queue, state], float(total))
        yield finished
        if "invalid" in stats:
            yield GaugeMetricFamily(
                "jobq_invalid_files", "Quarantined files in invalid/.", value=stats["invalid"]
            )


def metrics_registry(collector: SpoolCollector) -> CollectorRegistry:
    """A registry of its own holding only ``collector`` (never the process-global one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry's metrics in the Prometheus text format (blocking: it reads the spool)."""
    return generate_latest(registry)
