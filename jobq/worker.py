"""The worker: claim jobs, run them, keep the lease, shut down gracefully.

One poll iteration, in the manner of arq: promote due jobs, claim up to the free slots in one
call (a thread hop, or inline where that is cheaper: ``jobq.inline``), start each as a task.
What becomes of a job once its attempt ended is ``jobq.settle``'s (retries, group-committed
outcome records); the chores beside the claim loop (lease, cancel requests, logs, reaper,
collectors, feature chores) are ``jobq.housekeeping``'s.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import signal
import time
from typing import TYPE_CHECKING, cast

import anyio

from jobq.claiming import Claimer, Scan
from jobq.config import spool_dir
from jobq.context import CaptureHandler, new_context
from jobq.errors import ConfigurationError
from jobq.housekeeping import Housekeeping
from jobq.inline import gate_for
from jobq.jobtasks import job_tasks
from jobq.lease import Registration
from jobq.names import check_queue
from jobq.outage import Outage
from jobq.registry import lookup, registered_names
from jobq.report import Reporter
from jobq.runner import Ending, run_attempt
from jobq.settle import Attempt, Settler
from jobq.slots import Slots
from jobq.spool import SpoolDir
from jobq.unknown import UnknownJobs, unknown_job_error
from jobq.waiting import Wakeup, poll_backoff, watching

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Sequence

    from anyio.abc import TaskGroup

    from jobq.decorator import Spool
    from jobq.jobtasks import JobTasks
    from jobq.model import Job
    from jobq.spool import Claimed

__all__ = ("Worker",)

logger = logging.getLogger("jobq.worker")


class Worker:
    """Runs jobs from a spool until stopped (or, in burst mode, until nothing is runnable).

    Args:
        spool: a ``jobq.Spool``, a path, or None for the configured spool.
        queues: queues to serve, in no particular order (priority decides across them);
            default: the queues of the registered jobs, plus ``default``.
        concurrency: jobs running at once.
        lease: seconds a silent worker keeps its jobs before any other worker may take them.
        grace: seconds a graceful shutdown waits for running jobs.
        durable: fsync outcomes (default: the spool's setting).
        handle_signals: stop gracefully on SIGTERM/SIGINT (second signal: at once). Needs the
            main thread.
        watch: wake up on file events (inotify) when idle; default: yes unless
            ``$JOBQ_NO_WATCH=1``. Polling stays on either way (events are only a hint on
            network filesystems).
        result_ttl: seconds ``done`` records are kept for jobs without a ``result_ttl`` of
            their own; default: until ``jobq purge``.
        unknown_grace: seconds a job whose name this worker does not know is left for a worker
            that knows it before it fails with ``jobq.UnknownJob`` (rolling deploys; see
            ``jobq.unknown``). Burst mode fails such jobs at once.

    Raises:
        ConfigurationError: if a setting is out of range.
        InvalidName: if a queue name is invalid.
    """

    def __init__(
        self,
        spool: Spool | str | os.PathLike[str] | None = None,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        lease: float = 30.0,
        grace: float = 30.0,
        durable: bool | None = None,
        handle_signals: bool = False,
        watch: bool | None = None,
        result_ttl: float | None = None,
        unknown_grace: float = 300.0,
    ) -> None:
        # A jobq.Spool carries its SpoolDir; the worker does not need the producer API.
        given = getattr(spool, "dir", None)
        if isinstance(given, SpoolDir):
            self.spool = given if durable is None else spool_dir(given.root, durable)
        else:
            self.spool = spool_dir(cast("str | os.PathLike[str] | None", spool), durable)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if not lease > 0 or not grace >= 0:
            raise ConfigurationError("lease must be > 0 and grace >= 0 seconds")
        if isinstance(unknown_grace, bool) or not unknown_grace >= 0:
            raise ConfigurationError(f"unknown_grace must be seconds >= 0, got {unknown_grace!r}")
        self.unknown_grace = float(unknown_grace)
        if queues is None:
            found = {spec.queue for name in registered_names() if (spec := lookup(name))}
            queues = sorted(found | {"default"})
        self.queues = [check_queue(q) for q in queues]
        if not self.queues:
            raise ConfigurationError("a worker needs at least one queue")
        self.concurrency = concurrency
        self.lease = float(lease)
        self.grace = float(grace)
        self.handle_signals = handle_signals
        self.watch = watch
        if result_ttl is not None and not result_ttl >= 0:
            raise ConfigurationError(f"result_ttl must be seconds >= 0, got {result_ttl!r}")
        self.result_ttl = result_ttl
        about: dict[str, object] = {"queues": self.queues, "concurrency": concurrency}
        #: Its id, heartbeat and lost leases (``jobq.lease``).
        self.registration = Registration(self.spool, self.lease, about)
        self.outage = Outage()
        self.processed = 0
        #: The attempts it holds: running, or having their outcomes recorded (``jobq.slots``).
        self.slots = Slots(concurrency)
        #: The attempts whose function runs (``slots.running``).
        self.running = self.slots.running
        self._stopping = False
        self._changed: anyio.Event | None = None  # made by the first waiter after a change
        self.hard_stopped = False
        self.report = Reporter(self.spool.root, lambda: self.id)  # log lines and hooks
        self._claimer = Claimer(self.spool, self.queues, self.report, self.outage)
        self._gate = gate_for(self.spool.root, self.spool.durable)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The worker's current id (a new one after each lost lease)."""
        return self.registration.id

    def stop(self) -> None:
        """Stop claiming new jobs; running ones finish (within ``grace`` under signals).

        Call it on the worker's event loop; from another thread, through
        ``anyio.from_thread.run_sync(worker.stop, token=...)``.
        """
        self._stopping = True
        self._notify()

    def _notify(self) -> None:
        # Wake every task waiting for a change (a freed slot, a stop); later waiters make a
        # fresh event (not every change has a waiter: a job ends, the claim loop is busy).
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_change(self) -> None:
        """Wait until a slot frees or the worker is told to stop."""
        if self._changed is None:
            self._changed = anyio.Event()
        await self._changed.wait()

    async def run(self, *, burst: bool = False) -> None:
        """Run jobs until stopped; with ``burst=True`` return once nothing is runnable."""
        self._changed = None  # an event of an earlier run belongs to its event loop
        handler = CaptureHandler()
        logging.getLogger().addHandler(handler)
        self._settler = Settler(
            self.spool, lambda: self.id, self.lease, self.report,
            outage=self.outage, lease_lost=lambda: self.registration.lost, handed=self._handed,
        )  # fmt: skip
        self.flush_log = self._settler.flush_log
        self._claimer.unknown = UnknownJobs(
            self._claimer.holdback, 0.0 if burst else self.unknown_grace
        )
        self._settler.result_ttl = self.result_ttl
        clean = True
        failed: Exception | None = None
        with contextlib.ExitStack() as receiving:
            try:
                async with anyio.create_task_group() as outer:
                    if self.handle_signals:
                        # Handled from before the worker registers: whoever sees it registered
                        # may stop it gracefully. A start-up that hangs (a dead mount) still
                        # ends at a second signal: its calls are abandoned then.
                        signals = receiving.enter_context(
                            anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT)
                        )
                        outer.start_soon(self._signals, signals, outer)
                    try:
                        await self._start_up()
                    except Exception as exc:  # raised as itself below, not in a group
                        failed = exc
                    else:
                        await self._serve(outer, burst)
                    outer.cancel_scope.cancel()
                if failed is not None:
                    raise failed
            except BaseException:
                clean = False
                raise
            finally:
                # Signals take their default action again: a deregistration that hangs can
                # still be ended.
                receiving.close()
                self._settler.close()
                logging.getLogger().removeHandler(handler)
                self.registration.stop()
                if clean and not self.hard_stopped and not self.slots:
                    try:
                        await anyio.to_thread.run_sync(self.spool.deregister_worker, self.id)
                    except OSError as exc:  # the reaper removes it after a lease
                        logger.warning("cannot deregister worker %s: %s", self.id, exc)

    async def _start_up(self) -> None:
        """Make the queues' directories and register (abandoned at a hard stop: a dead mount)."""
        for queue in self.queues:
            await anyio.to_thread.run_sync(self.spool.ensure_queue, queue, abandon_on_cancel=True)
        await anyio.to_thread.run_sync(self.registration.register, abandon_on_cancel=True)

    async def _serve(self, outer: TaskGroup, burst: bool) -> None:
        """Run the committer, hooks and chores beside the claim loop until it ends."""
        outer.start_soon(self._settler.committer)
        await outer.start(self.report.hooks.run)
        # Start-up chores (reaping, collecting tmp/) finish before the first claim.
        await outer.start(Housekeeping(self, burst=burst).run)
        async with job_tasks() as jobs:
            await self._claim_loop(jobs, burst)
        await self.report.hooks.drain()  # the last jobs' hooks, within their timeout

    async def _signals(self, signals: AsyncIterator[signal.Signals], outer: TaskGroup) -> None:
        async for signum in signals:
            if self._stopping:
                logger.warning("second signal: stopping now (jobs recover by lease)")
                self.hard_stopped = True
                outer.cancel_scope.cancel()
                return
            logger.info("%s: finishing running jobs (grace %g s)", signum.name, self.grace)
            self.stop()
            outer.start_soon(self._grace_timer)

    async def _grace_timer(self) -> None:
        await anyio.sleep(self.grace)
        for run in list(self.running.values()):
            run.reason = "shutdown"
            run.scope.cancel()

    # -- claiming --------------------------------------------------------------------------

    async def _claim_loop(self, jobs: JobTasks, burst: bool) -> None:
        """Claim while slots are free; when idle, wait for a file event, a due time or a poll.

        The file events (see ``jobq.waiting``) only cut the wait short: each wait still ends
        with a scan, so a missed or missing event delays a job by one poll, never loses it.
        Once a scan has seen everything (it claimed fewer jobs than it had slots for), a freed
        slot alone does not start another scan; a file event, the poll or a due time does.
        """
        wake = Wakeup(on_raise=self._file_event)
        with watching(self._watched_dirs(), wake.raise_threadsafe, enabled=self.watch) as live:
            self._claimer.backlog.events_trusted = live
            # Trusted events leave polling as a slow safety net; else polling is how we learn.
            idle = poll_backoff(live, first=0.001, cap=0.1)
            look_at = 0.0  # time.monotonic() of the next scan that no event asked for
            while not self._stopping:
                free = self.slots.free()
                left = look_at - time.monotonic()
                if free <= 0 or (left > 0 and not wake.raised and not burst):
                    with anyio.move_on_after(left if free > 0 else math.inf):
                        await self.wait_change()
                    continue
                if self.registration.lost:  # no claims until housekeeping registered us again
                    with anyio.move_on_after(0.1):
                        await self.wait_change()
                    continue
                wake.clear()  # before the scan: a file landing during it raises the flag again
                # A job that ends during the scan may requeue itself behind the scan's back.
                finished_before = self.processed
                began = time.monotonic()
                try:
                    scan, limit = await self._scan(free)
                except OSError as exc:
                    # Jobs claimed before the error stay in our running directory: the stray
                    # sweep hands them back once the spool answers.
                    self.outage.failed("claiming", exc)
                    await anyio.sleep(self.outage.next_delay())
                    continue
                self.outage.recovered(began)
                claimed, next_due = scan.claimed, scan.next_due
                for held, job in claimed:
                    self._start(jobs, held, job)
                if len(claimed) == limit or scan.contended or scan.unlisted:
                    # Maybe more: look again as soon as a slot frees (or now, if the scan
                    # stopped short of its slots or of a listing). After lost races the
                    # listing is another worker's leftovers, not the end of the queue.
                    idle.reset()
                    more = len(claimed) == limit or scan.unlisted
                    look_at = 0.0 if more else time.monotonic() + 0.001
                    continue
                # A recording may still fail and send its job back to pending.
                if burst and not self.slots and not scan.more_later:
                    if self.processed == finished_before:
                        return
                    continue  # look again: the scan may predate a retry's requeue
                if claimed:
                    idle.reset()
                pause = idle.next()
                if next_due is not None:
                    pause = min(pause, max(0.0, next_due - time.time()))
                look_at = time.monotonic() + pause
                if burst and not wake.raised:  # burst mode looks on every change, so wait here
                    with anyio.move_on_after(pause):
                        await self.wait_change()

    def _handed(self, run: Attempt) -> None:
        # The committer has the attempt's outcome: its slot is free, and so is its limit
        # slot (its function has ended).
        if self.slots.hand_over(run):
            self._claimer.limits.finished(run.job.id)
            self._notify()

    def _file_event(self) -> None:
        self._claimer.backlog.arrived()
        self._notify()

    async def _scan(self, free: int) -> tuple[Scan, int]:
        """One claim scan, and how many jobs it could claim at most.

        On the loop's thread when that is cheap (``jobq.inline``), else in a thread. An inline
        scan claims at most a part's worth of jobs (a claim costs about what a record does),
        lists only where the last listings were cheap and otherwise stops where it would
        list. After a spool error, and until the spool answers, scans (and the sweep for
        strays) go to a thread: a failing disk may hang too.
        """
        cheap = self._claimer.listing_cheap()
        troubled = self.outage.since is not None or self.outage.strays
        if troubled or not self._gate.inline or (self._claimer.must_list() and not cheap):
            scan = await self._gate.in_thread(
                functools.partial(self._claimer.scan, self.id, free, self.slots)
            )
            return scan, free
        limit = min(free, self._gate.batch_size())
        call = functools.partial(self._claimer.scan, self.id, limit, self.slots, may_list=cheap)
        return await self._gate.call(call), limit

    def _watched_dirs(self) -> list[str]:
        return [
            d
            for queue in self.queues
            for d in (self.spool.pending_dir(queue), self.spool.scheduled_dir(queue))
        ]

    def _start(self, jobs: JobTasks, held: Claimed, job: Job) -> None:
        progress = self._settler.write_progress
        ctx = new_context(job.id, job.name, job.queue, held.name.attempts, progress)
        run = Attempt(held, job, ctx)
        self.slots.start(run)
        jobs(self._run_job, run)

    # -- running ---------------------------------------------------------------------------

    async def _run_job(self, run: Attempt) -> None:
        run.ctx.activate()
        try:
            spec = lookup(run.job.name)
            if spec is None:  # its grace here is over (see _admit)
                error = unknown_job_error(run.job.name, self._claimer.unknown.grace)
                ending = Ending("fatal", error=error)
            else:
                self.report.started(run)
                job_id = run.job.id
                ending = await run_attempt(
                    spec, run.job, run.scope, lambda: self._claimer.limits.started(job_id)
                )
            await self.flush_log(run)
            await self._settler.settle(run, ending)
        except OSError as exc:
            # The job file stays in running/: the stray sweep hands it back once the spool
            # answers, or a reaper does if our lease runs out first.
            self.outage.failed(f"settling job {run.job.id}", exc)
        finally:
            self._claimer.limits.finished(run.job.id)
            self.slots.end(run.job.id)
            self.processed += 1
            self._notify()
