"""Directory names and file names of the spool (format 1), in one place.

A job's mutable state lives in its file name, never in its contents, so a scan can sort and
route jobs from a directory listing alone::

    queues/Q/pending/    PPPPP-TTTTTTTTTTTTTTTT-ID-A.json      priority key, enqueue µs, id, starts
    queues/Q/scheduled/  DDDDDDDDDDDDDDDD-<pending name>       due time in µs leads
    queues/Q/waiting/    <pending name>                        held by after= dependencies
    running/WORKER/      Q@<pending name>                      A already counts this start
    done/Q/ID.json, failed/Q/ID.json, cancelled/Q/ID.json      outcome records
    invalid/             the quarantined file's name (STATE@Q@ID.json for an outcome record)

The priority key is ``10000 - priority``, so higher priorities sort first and equal priorities
run in enqueue order. docs/spool-format.md is the full specification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

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
    "JOURNALS",
    "JOURNAL_SUFFIX",
    "KEYS",
    "LIMITS",
    "LOGS",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "PENDING",
    "QUEUES",
    "REASON_SUFFIX",
    "RUNNING",
    "SCHEDULED",
    "SCHEDULES",
    "TMP",
    "WAITING",
    "WORKERS",
    "JobFileName",
    "QuarantinedName",
    "fence_name",
    "is_fence_name",
    "parse_quarantined",
    "parse_running",
    "parse_scheduled",
    "quarantined_record_name",
    "worker_pid",
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
JOURNALS = "journals"  # journals/PRODUCER.N.jsonl: durable enqueues' job files, one a line
JOURNAL_SUFFIX = ".jsonl"
REASON_SUFFIX = ".reason"  # invalid/NAME.reason: why NAME was quarantined
FINISHED_STATES = (DONE, FAILED, CANCELLED)
#: Every state a job can be in, in the order a job goes through them (``invalid`` aside).
STATES = (PENDING, SCHEDULED, WAITING, RUNNING, DONE, FAILED, CANCELLED)

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
        return JobFileName(self.priority, self.enqueued_us, self.job_id, self.attempts + 1)

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


def worker_pid(worker_id: str) -> int | None:
    """The pid in a jobq worker id (``host.pid.random``, docs/spool-format.md), if it has one.

    It names the staged records of that worker's commits (``STATE@Q@ID.PID.RANDOM.rec``).
    """
    parts = worker_id.split(".")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


def fence_name(running_name: str) -> str:
    """The name a running job file takes in its directory while its outcome is committed.

    Renaming the job file there is the commit's fence: of the worker and a reaper taking the
    job back, one rename wins. The name differs from the running name only by a zero before
    the start count (``Q@PPPPP-T-ID-0A.json``), so every reader (``parse_running``) still
    reads it as the same job; a reaper that finds it completes the commit it belongs to
    (``jobq.spool.commits``).
    """
    head, _, tail = running_name.rpartition("-")
    return f"{head}-0{tail}"


def is_fence_name(name: str) -> bool:
    """Whether a file name in ``running/WORKER/`` is a fence name (see ``fence_name``)."""
    return name[: -len(JOB_SUFFIX)].rpartition("-")[2].startswith("0")


class QuarantinedName(NamedTuple):
    """The job a file in ``invalid/`` belonged to, as its name tells.

    Attributes:
        job_id: the job's id.
        queue: its queue, where the name says it (running files, outcome records).
        state: the state of a quarantined outcome record (``done``, ``failed`` or
            ``cancelled``); None for a job file.
    """

    job_id: str
    queue: str | None
    state: str | None


def quarantined_record_name(state: str, queue: str, job_id: str) -> str:
    """The name in ``invalid/`` of the outcome record ``STATE/QUEUE/ID.json``."""
    return f"{state}@{queue}@{job_id}{JOB_SUFFIX}"


def parse_quarantined(name: str) -> QuarantinedName:
    """Which job a file in ``invalid/`` belonged to.

    A quarantined file keeps the name it had (a pending, scheduled or running job file name;
    ``ID.PID.RANDOM.retry`` for a ``jobq retry`` stopped halfway), or takes
    ``STATE@QUEUE@ID.json`` for an outcome record; a ``.XXXXXX`` suffix tells apart two
    files of one name.

    Raises:
        InvalidName: if the name tells no job (a foreign file, a ``.reason`` file).
    """
    stem, dot, tail = name.rpartition(".")
    if dot and len(tail) == 6 and all(c in "0123456789abcdef" for c in tail):
        name = stem  # the suffix quarantine adds when the name was taken
    if name.endswith(".retry"):
        return QuarantinedName(check_job_id(name.partition(".")[0]), None, None)
    state, sep, rest = name.partition("@")
    if sep and state in FINISHED_STATES:
        # A record has two "@"; a running name of a queue called "done" (or so) has one.
        queue, second, filename = rest.partition("@")
        if second and filename.endswith(JOB_SUFFIX):
            job_id = check_job_id(filename[: -len(JOB_SUFFIX)])
            return QuarantinedName(job_id, check_queue(queue), state)
    if sep:
        queue, job = parse_running(name)
        return QuarantinedName(job.job_id, queue, None)
    if name.count("-") == 4:
        return QuarantinedName(parse_scheduled(name)[1].job_id, None, None)
    return QuarantinedName(JobFileName.parse(name).job_id, None, None)
