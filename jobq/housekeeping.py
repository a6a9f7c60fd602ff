"""A worker's housekeeping: the chores that run beside the claim loop on a timer.

Each chore is a named step with its own interval: watching the lease, serving cancel requests,
flushing job logs, reaping dead workers, collecting ``tmp/``, and the chores that features add
(periodic ticks, dependency sweeps, result expiry). A filesystem error in a chore is logged and
retried a tick later; it never stops the worker.

Failure story: every chore is idempotent and leaves the spool valid between its steps, so a
worker killed in the middle of one leaves work that the next run of the chore, by any worker,
finishes.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from jobq import dependencies, expiry
from jobq.lease import reap_expired, requeue_held
from jobq.outage import is_unreachable
from jobq.periodic import Scheduler
from jobq.registry import lookup, registered_names

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import TaskStatus

    from jobq.worker import Worker

__all__ = ("Chore", "Housekeeping")

logger = logging.getLogger("jobq.worker")


@dataclass(slots=True)
class Chore:
    """One housekeeping step run every ``interval`` seconds.

    Attributes:
        what: what it does, for the log line when it fails.
        interval: seconds between runs; the first run comes at once unless ``delayed``.
        func: the step (async).
        delayed: wait one interval before the first run.
    """

    what: str
    interval: float
    func: Callable[[], Awaitable[object]]
    delayed: bool = False
    last: float = -math.inf


def in_thread(func: Callable[..., object], *args: Any) -> Callable[[], Awaitable[object]]:
    """A chore step that runs the blocking ``func(*args)`` in a worker thread."""

    async def step() -> object:
        return await anyio.to_thread.run_sync(functools.partial(func, *args))

    return step


class Housekeeping:
    """The chores of one worker, run by ``run()`` until the worker stops.

    Args:
        worker: the worker whose lease, running jobs and spool the chores look after.
        burst: the worker exits once nothing is runnable, so it schedules no periodic jobs.
    """

    def __init__(self, worker: Worker, *, burst: bool = False) -> None:
        self.worker = worker
        spool = worker.spool
        self.tick = min(0.25, worker.lease / 4)
        self.chores = [
            Chore("reading cancel requests", 0.0, self._serve_cancels),
            Chore("writing job logs", 0.5, self._flush_logs),
            Chore("reaping", worker.lease / 2, self._reap),
            Chore("handing back the jobs of a lost lease", 1.0, self._hand_back),
            # Once at start: a restart after a crash cleans up.
            Chore("collecting tmp/", 300.0, in_thread(spool.collect_tmp, 3600.0)),
            Chore("collecting cancel requests", 300.0, in_thread(spool.collect_cancel_requests)),
            Chore("collecting dead producers' journals", 10.0, in_thread(spool.collect_journals)),
            # Features: each a module with one step that any worker may run at any time.
            Chore("releasing dependents", 5.0, in_thread(dependencies.sweep, spool), True),
            Chore("expiring done records", 1.0, in_thread(expiry.expire_due, spool)),
        ]
        periodic = [
            spec
            for name in registered_names()
            if (spec := lookup(name)) is not None
            and spec.schedule is not None
            and spec.queue in worker.queues
        ]
        if periodic and not burst:
            scheduler = Scheduler(spool, periodic, stall=worker.lease)
            self.chores.insert(0, Chore("describing periodic jobs", math.inf,
                                        in_thread(scheduler.register)))  # fmt: skip
            self.chores.append(Chore("enqueueing periodic jobs", 0.2, in_thread(scheduler.run_due)))

    def add(self, chore: Chore) -> None:
        """Add a chore (a feature's periodic step)."""
        self.chores.append(chore)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the chores forever (the worker cancels this task when it stops).

        Started with ``task_group.start``, it reports started once the first round is done:
        the worker claims only after its start-up chores (reaping dead workers, collecting
        ``tmp/``) ran, so that a ``--burst`` worker that finds nothing to run has still done
        them before it exits, and runs the jobs the reaper gave back.
        """
        now = time.monotonic()
        for chore in self.chores:
            if chore.delayed:
                chore.last = now
        await self.run_once()
        task_status.started()
        while True:
            await anyio.sleep(self.tick)
            await self.run_once()

    async def run_once(self) -> None:
        """Run every chore that is due now."""
        if self.worker.registration.lost:
            await self._chore("re-registering after a lost lease", self._lease_lost)
        for chore in self.chores:
            now = time.monotonic()
            if now - chore.last >= chore.interval:
                chore.last = now
                await self._chore(chore.what, chore.func)

    async def _chore(self, what: str, func: Callable[[], Awaitable[object]]) -> None:
        """Run one step; a filesystem error is logged, not fatal (next tick retries).

        A worker that dies on a transient error (NFS hiccup, full disk) would strand its jobs
        for a lease; one that keeps going retries the step a tick later.
        """
        try:
            await func()
        except OSError as exc:  # SpoolError is an OSError too
            if is_unreachable(exc):  # logged once per outage, not once per chore and tick
                self.worker.outage.failed(what, exc)
            else:
                logger.warning("%s failed (retrying): %s", what, exc)

    async def _serve_cancels(self) -> None:
        running = self.worker.running
        if not running:
            return
        requested = await anyio.to_thread.run_sync(self.worker.spool.cancel_requests)
        for job_id in requested & running.keys():
            run = running[job_id]
            run.reason = "cancel"
            run.scope.cancel()

    async def _flush_logs(self) -> None:
        for run in list(self.worker.running.values()):
            await self._chore("writing a job log", functools.partial(self.worker.flush_log, run))

    async def _reap(self) -> None:
        # Our lease stands in for the unknown lease of a worker whose registration is damaged.
        await anyio.to_thread.run_sync(
            reap_expired, self.worker.spool, self.worker.id, self.worker.lease
        )

    async def _lease_lost(self) -> None:
        """Stop our jobs (their outcomes would be fenced anyway) and come back as a new worker.

        Runs every tick until the new registration succeeds: while the spool is down that
        fails, and the next tick tries the same new id again. The old id's jobs are stopped
        at once (a reaper may be running them elsewhere already) and handed back by
        ``_hand_back``; claims resume under the new id.
        """
        worker, registration = self.worker, self.worker.registration
        old_id = registration.id
        if old_id not in registration.retired:
            logger.warning("worker %s lost its lease; stopping its jobs", old_id)
            registration.retired.append(old_id)
            old_dir = worker.spool.running_dir(old_id) + os.sep
            for run in worker.running.values():
                if run.claimed.path.startswith(old_dir):
                    run.reason = "lost"
                    run.scope.cancel()
        await anyio.to_thread.run_sync(registration.register_anew)
        logger.warning("worker %s is back as %s", old_id, registration.id)

    async def _hand_back(self) -> None:
        """Return the jobs of ids retired by lost leases, once none of their attempts runs.

        A reaper elsewhere may have done it already; each step is a rename only one wins.
        """
        worker, spool = self.worker, self.worker.spool
        retired = worker.registration.retired
        for old_id in list(retired):
            if old_id == worker.id:
                continue  # not registered again yet
            old_dir = spool.running_dir(old_id) + os.sep
            if any(r.claimed.path.startswith(old_dir) for r in worker.slots.attempts()):
                continue  # a stopped attempt has not ended yet (a sync job runs on)
            for held in await anyio.to_thread.run_sync(spool.running_jobs, old_id):
                await anyio.to_thread.run_sync(
                    functools.partial(requeue_held, spool, held, who=old_id)
                )
            await anyio.to_thread.run_sync(spool.deregister_worker, old_id)
            retired.remove(old_id)
