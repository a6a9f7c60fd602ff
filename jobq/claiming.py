"""Claim scans: which jobs a worker takes next, in one blocking call per scan.

A scan promotes due scheduled jobs, then claims up to the worker's free slots in priority order
from a sorted listing kept between scans (``jobq.backlog``), each claim one rename into the
worker's own running directory. The worker makes the call in a thread, or on its event loop's
thread where that is cheap (``jobq.inline``): a scan tells it whether it must list a directory
first and what listing cost last time. A claimed job that may not start yet (a name this worker does
not know, a full limit) goes back to pending through ``jobq.holdback``. After a filesystem
error, the scan first hands back jobs that a failed step left in the running directory.

Failure story: a claim is one rename; a worker that dies after it leaves the job in
``running/WORKER/``, where the reaper finds it once the lease expires.
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import TYPE_CHECKING, Literal, NamedTuple

from jobq.backlog import Backlog
from jobq.errors import InvalidName
from jobq.holdback import HoldBack
from jobq.lease import requeue_held
from jobq.limits import Limits
from jobq.model import CorruptJob, Job
from jobq.unknown import UnknownJobs

if TYPE_CHECKING:
    from collections.abc import Container, Sequence

    from jobq.outage import Outage
    from jobq.report import Reporter
    from jobq.spool import Claimed, SpoolDir

__all__ = ("BURST_HORIZON", "CHEAP_LISTING", "SCHEDULED_EVERY", "Claimer", "Scan")

logger = logging.getLogger("jobq.worker")

#: In burst mode, scheduled jobs due within this many seconds still count as work to wait for.
BURST_HORIZON = 60.0

#: Listings of pending/ and scheduled/ that took less than this (seconds) last time may run
#: on the event loop's thread (``jobq.inline``).
CHEAP_LISTING = 0.0002

#: Seconds between two listings of ``scheduled/`` (sooner when a listed job falls due): how
#: late a delayed job or a retry that another process scheduled may start.
SCHEDULED_EVERY = 0.1


class Scan(NamedTuple):
    """What one claim scan found."""

    claimed: list[tuple[Claimed, Job]]
    next_due: float | None  # when the earliest scheduled job is due (epoch seconds)
    more_later: bool  # jobs pending or due within BURST_HORIZON (burst mode waits for them)
    contended: bool  # another worker won some claims: its leftovers are not the queue's end
    unlisted: bool  # stopped where a listing was needed but not allowed: look again at once


class Claimer:
    """The claim scans of one worker, with what they keep between scans.

    Args:
        spool: the spool.
        queues: the queues to claim from.
        report: told of quarantined files.
        outage: the worker's outage state (its stray flag asks for a sweep).

    Attributes:
        holdback: where claimed jobs that may not start yet go back (shared with ``limits``).
        limits: the slots and start tokens of limited jobs.
        unknown: how jobs with names this worker does not know are held back; set by the
            worker when it starts (its grace depends on burst mode).
    """

    def __init__(
        self, spool: SpoolDir, queues: Sequence[str], report: Reporter, outage: Outage
    ) -> None:
        self.spool = spool
        self.queues = list(queues)
        self.report = report
        self.outage = outage
        self.holdback = HoldBack(spool)
        self.limits = Limits(spool, self.holdback)
        self.unknown = UnknownJobs(self.holdback, 0.0)
        self.backlog = Backlog(spool.pending_names, self.queues)
        self._scheduled_look = 0.0  # time.monotonic() of the next listing of scheduled/
        self._scheduled_due: int | None = None  # earliest due time (µs) it listed
        self._scheduled_cost: float | None = None  # seconds its last listing took

    def listing_cheap(self) -> bool:
        """Whether listing pending/ and scheduled/ cost little last time (``CHEAP_LISTING``).

        A listing costs time in proportion to the directory (about 1 µs an entry): a scan
        that lists a deep queue belongs in a thread, one that lists an idle worker's few new
        jobs does not. Unknown before the first listings, and then not cheap.
        """
        listed, scheduled = self.backlog.cost, self._scheduled_cost
        return listed is not None and scheduled is not None and listed + scheduled < CHEAP_LISTING

    def must_list(self) -> bool:
        """Whether the next scan lists pending/ or scheduled/ before it can claim anything."""
        now_us = round(time.time() * 1_000_000)
        return self.backlog.needs_listing() or self._scheduled_listing_due(now_us)

    def _scheduled_listing_due(self, now_us: int) -> bool:
        """Whether ``scheduled/`` is due for a listing (see ``_promote_due``)."""
        due = self._scheduled_due
        return time.monotonic() >= self._scheduled_look or (due is not None and due <= now_us)

    def scan(
        self, worker_id: str, limit: int, held: Container[str], *, may_list: bool = True
    ) -> Scan:
        """Claim up to ``limit`` jobs for ``worker_id`` (blocking).

        ``held`` has the ids of the jobs the worker holds (running, or waiting for their
        records: ``jobq.slots``); any other job in its running directory is a stray to hand
        back, looked for only after a spool error. With ``may_list`` false the scan stops
        where it would list pending/ (``Scan.unlisted``).

        Raises:
            OSError: if the spool fails; jobs claimed before the error stay in the running
                directory for the next scan's stray sweep.
        """
        if self.outage.strays:
            self._requeue_strays(worker_id, held)
        return self._claim_batch(worker_id, limit, may_list)

    def _claim_batch(self, worker_id: str, limit: int, may_list: bool) -> Scan:
        """Promote due jobs, then claim up to ``limit`` jobs in priority order (one call).

        Claims come from the backlog (a sorted listing kept between calls, see
        ``jobq.backlog``), listed again once used up.
        """
        now_us = round(time.time() * 1_000_000)
        next_due = self._promote_due(now_us, may_list)
        self.backlog.refresh_if_stale()
        claimed: list[tuple[Claimed, Job]] = []
        listed = seen = contended = unlisted = False
        while len(claimed) < limit:
            entry = self.backlog.pop()
            if entry is None:
                if listed or not may_list:
                    unlisted = not listed  # stopped short of a listing it may not make
                    break
                listed = True
                seen = self.backlog.relist() > 0 or seen
                continue
            seen = True
            if self.holdback.passes_over(entry[0]):
                continue
            held = self._claim_one(worker_id, *entry)
            if held == "lost":
                contended = True
                # Another worker is claiming right here: jump past its batch rather than race
                # it name by name. The skipped names stay pending; the next listing has them.
                self.backlog.skip(limit + random.randrange(limit + 1))
                continue
            if held == "invalid":
                continue
            job = self._load(held)
            if job is not None and self._admit(worker_id, job, held):
                claimed.append((held, job))
        if (look := self.holdback.next_look()) is not None:
            look_us = round(look * 1_000_000)
            next_due = look_us if next_due is None else min(next_due, look_us)
        soon = next_due is not None and next_due <= now_us + BURST_HORIZON * 1_000_000
        return Scan(
            claimed,
            None if next_due is None else next_due / 1_000_000,
            soon or seen,
            contended,
            unlisted,
        )

    def _requeue_strays(self, worker_id: str, held: Container[str]) -> None:
        """Hand back the jobs in our running directory that no attempt of ours holds.

        After a filesystem error halfway through a claim batch or a settle, a job file can be
        left in ``running/WORKER/`` with nothing running it; the lease holds (we heartbeat),
        so no reaper would take it. Runs in the claim batch's call, so no claim of ours
        is in flight meanwhile.
        """
        for stray in self.spool.running_jobs(worker_id):
            if stray.job_id not in held:
                what = requeue_held(self.spool, stray, who=worker_id)
                logger.warning("job %s: handed back after a spool error (%s)", stray.job_id, what)
        self.outage.strays = False

    def _promote_due(self, now_us: int, may_list: bool = True) -> int | None:
        """Move due scheduled jobs to pending; when the next one is due (µs), or None.

        ``scheduled/`` is listed at most every ``SCHEDULED_EVERY`` seconds, or sooner when
        the earliest job it held is due: a busy worker scans after every finished job, and on
        a network filesystem each listing is three round trips to the server. Between
        listings (and in a scan that may not list) the answer is the next look, so an idle
        worker wakes for it.
        """
        now = time.monotonic()
        due = self._scheduled_due
        if not (may_list and self._scheduled_listing_due(now_us)):
            look_us = now_us + max(0, round((self._scheduled_look - now) * 1_000_000))
            return look_us if due is None else min(due, look_us)
        next_due: int | None = None
        started = time.monotonic()
        for queue in self.queues:
            moved, due = self.spool.promote_due_next(queue, now_us)
            if moved:
                self.backlog.invalidate()
            if due is not None and (next_due is None or due < next_due):
                next_due = due
        self._scheduled_due = next_due
        self._scheduled_cost = time.monotonic() - started
        self._scheduled_look = now + SCHEDULED_EVERY
        return next_due

    def _admit(self, worker_id: str, job: Job, held: Claimed) -> bool:
        """Whether a claimed job may start now; if not, it went back to pending for a while
        (a name this worker does not know, a full limit: see ``jobq.holdback``)."""
        return self.unknown.admit(job, held) and self.limits.admit(job, held, worker_id)

    def _claim_one(
        self, worker_id: str, filename: str, queue: str
    ) -> Claimed | Literal["lost", "invalid"]:
        """Claim one listed job; "lost" if another worker won it, "invalid" if quarantined."""
        try:
            return self.spool.claim(worker_id, queue, filename) or "lost"
        except InvalidName as exc:
            path = os.path.join(self.spool.pending_dir(queue), filename)
            self.report.quarantined(self.spool.quarantine(path, str(exc)), str(exc))
            return "invalid"

    def _load(self, held: Claimed) -> Job | None:
        try:
            job = self.spool.read_job(held.path, held.job_id)
        except CorruptJob as exc:
            reason = f"corrupt job file: {exc}"
            self.report.quarantined(self.spool.quarantine(held.path, reason), reason)
            return None
        if job.queue != held.queue:  # its id is checked by read_job
            reason = "job file's queue does not match its name"
            self.report.quarantined(self.spool.quarantine(held.path, reason), reason)
            return None
        return job
