"""Directory names and file names of the spool (format 1), in one place.

A job's mutable state lives in its file name, never in its contents, so a scan can sort and
route jobs from a directory listing alone::

    queues/Q/pending/    PPPPP-TTTTTTTTTTTTTTTT-ID-A.json      priority key, enqueue µs, id, starts
    queues/Q/scheduled/  DDDDDDDDDDDDDDDD-<pending name>       due time in µs leads
    queues/Q/waiting/    <pending name>                        held by after= dependencies
    running/WORKER/      Q@<pending name>                      A already counts this start
    done/Q/ID.json, failed/Q/ID.json, cancelled/Q/ID.json      outcome records

The priority key is ``10000 - priority``, so higher priorities sort first and equal priorities
run in enqueue order. docs/spool-format.md is the full specification.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from jobq.errors import InvalidName
from jobq.names import check_job_id, check_queue

__all__ = (
    "CANCELLED",
    "CANCEL_REQUESTS",
    "CLOCK_FILE",
    "DEPS",
    "DONE",
    "EXPIRY",
    "FAILED",
    "FINISHED_STATES",
    "FORMAT_FILE",
    "FORMAT_VERSION",
    "INVALID",
    "JOB_SUFFIX",
    "KEYS",
    "LIMITS",
    "LOGS",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "PENDING",
    "QUEUES",
    "RUNNING",
    "SCHEDULED",
    "SCHEDULES",
    "TMP",
    "WAITING",
    "WORKERS",
    "JobFileName",
    "parse_running",
    "parse_scheduled",
)

FORMAT_VERSION = 1
FORMAT_FILE = "jobq-spool.json"
CLOCK_FILE = "clock"
TMP = "tmp"
QUEUES = "queues"
PENDING = "pending"
SCHEDULED = "scheduled"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"
LOGS = "logs"
WORKERS = "workers"
INVALID = "invalid"
KEYS = "keys"
CANCEL_REQUESTS = "cancel"
WAITING = "waiting"  # queues/Q/waiting/: jobs held by after= until their dependencies are done
DEPS = "deps"  # deps/DEP_ID/: one file per job waiting for DEP_ID
SCHEDULES = "schedules"  # schedules/NAME.json: periodic jobs the workers serve
LIMITS = "limits"  # limits/NAME/: running slots and rate tokens of limited jobs
EXPIRY = "expiry"  # expiry/: when done records with a result_ttl are removed
JOB_SUFFIX = ".json"
FINISHED_STATES = (DONE, FAILED, CANCELLED)

MIN_PRIORITY = -9999
MAX_PRIORITY = 9999
_PRIORITY_BASE = 10000


@dataclass(frozen=True, slots=True)
class JobFileName:
    """The parts of a pending job's file name.

    Attributes:
        priority: higher runs first, from ``MIN_PRIORITY`` to ``MAX_PRIORITY``.
        enqueued_us: enqueue time in microseconds since the epoch (FIFO within a priority).
        job_id: the job's id.
        attempts: how many times the job has been started so far.
    """

    priority: int
    enqueued_us: int
    job_id: str
    attempts: int

    @property
    def filename(self) -> str:
        """The pending file name; it sorts by priority, then enqueue time."""
        key = _PRIORITY_BASE - self.priority
        return f"{key:05d}-{self.enqueued_us:016d}-{self.job_id}-{self.attempts}{JOB_SUFFIX}"

    def started(self) -> JobFileName:
        """The same job with one more start counted."""
        return replace(self, attempts=self.attempts + 1)

    def scheduled_name(self, due_us: int) -> str:
        """The file name in ``scheduled/``: due time first so a listing sorts by due time."""
        return f"{due_us:016d}-{self.filename}"

    def running_name(self, queue: str) -> str:
        """The file name in ``running/WORKER/``: the queue leads so a requeue needs no read."""
        return f"{queue}@{self.filename}"

    @classmethod
    def parse(cls, name: str) -> JobFileName:
        """Parse a pending file name.

        Raises:
            InvalidName: if ``name`` is not a pending job file name.
        """
        if not name.endswith(JOB_SUFFIX):
            raise InvalidName(f"not a job file name: {name!r}")
        parts = name[: -len(JOB_SUFFIX)].split("-")
        if len(parts) != 4 or not (parts[0].isdigit() and parts[1].isdigit()):
            raise InvalidName(f"not a job file name: {name!r}")
        if not parts[3].isdigit() or len(parts[0]) != 5:
            raise InvalidName(f"not a job file name: {name!r}")
        priority = _PRIORITY_BASE - int(parts[0])
        if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise InvalidName(f"priority out of range in job file name: {name!r}")
        return cls(priority, int(parts[1]), check_job_id(parts[2]), int(parts[3]))


def parse_scheduled(name: str) -> tuple[int, JobFileName]:
    """Split a ``scheduled/`` file name into its due time (µs) and pending name.

    Raises:
        InvalidName: if ``name`` is not a scheduled job file name.
    """
    due, sep, rest = name.partition("-")
    if not sep or not due.isdigit():
        raise InvalidName(f"not a scheduled job file name: {name!r}")
    return int(due), JobFileName.parse(rest)


def parse_running(name: str) -> tuple[str, JobFileName]:
    """Split a ``running/WORKER/`` file name into its queue and pending name.

    Raises:
        InvalidName: if ``name`` is not a running job file name.
    """
    queue, sep, rest = name.partition("@")
    if not sep:
        raise InvalidName(f"not a running job file name: {name!r}")
    return check_queue(queue), JobFileName.parse(rest)
