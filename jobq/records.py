"""Outcome records as readers meet them, and what becomes of one that cannot be read.

A worker writes an outcome record whole and renames it into ``STATE/QUEUE/ID.json``, so a
reader never sees half of one, unless the power failed while the worker ran with durability
off: the record may then come back empty or cut short. Whoever meets such a record first
(``result()``, ``jobq status ID``, ``jobq jobs``, ``jobq retry``, an ``enqueue`` whose
``after=`` names the job) quarantines it the same way, through ``read``: it moves byte for byte to
``invalid/STATE@QUEUE@ID.json`` with a ``.reason`` file, and from then on the job's state is
``invalid`` everywhere (``jobq status ID`` shows the reason and exits 1, ``result()`` raises
``jobq.JobFailed`` with the error type ``jobq.Quarantined``, ``jobq jobs --state invalid``
lists it). A job whose job file was quarantined reads the same way.

The job does not run again by itself: the record had replaced its job file, so its
arguments are gone with the record. Its dependents are settled by the state the record had
(see ``jobq.dependencies``). Workers never read a record's contents (dependents, expiry and
cancel requests go by where a record is), so until someone meets it, a damaged record counts
in its directory's state, which is the state it had.

A record met *bare* (the job without its outcome, between the two renames of a commit) is not
damaged; if the staged record that should complete it is the damaged one, the job runs again
(see ``SpoolDir._complete_commit``).

Failure story: the quarantine is one rename, then the ``.reason`` file. A crash between
them leaves the file in ``invalid/`` under its telling name, without a reason: it is still
found and reported, with a generic reason.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobq import layout as L
from jobq.model import CorruptJob, Job, decode_record

if TYPE_CHECKING:
    from collections.abc import Iterable

    from jobq.spool import SpoolDir

__all__ = ("QUARANTINED", "Quarantined", "Record", "find", "quarantined", "read")

#: The error type that ``result()`` and ``jobq status ID`` report for a quarantined job.
QUARANTINED = "jobq.Quarantined"


@dataclass(frozen=True, slots=True)
class Record:
    """A readable outcome record.

    Attributes:
        path: where it is.
        state: ``done``, ``failed`` or ``cancelled`` (its directory).
        queue: its queue.
        job: the job it records.
        outcome: its outcome fields; without ``state`` while a commit is between its renames.
    """

    path: str
    state: str
    queue: str
    job: Job
    outcome: dict[str, Any]

    @property
    def complete(self) -> bool:
        """Whether the outcome is there (False: caught between a commit's two renames)."""
        return "state" in self.outcome


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A job whose file (its job file or its outcome record) is in ``invalid/``.

    Attributes:
        job_id: the job's id.
        queue: its queue, where known.
        state: the state of a quarantined outcome record; None for a job file.
        path: the quarantined file (still in place if the spool refused the move).
        reason: why it was quarantined.
    """

    job_id: str
    queue: str | None
    state: str | None
    path: str
    reason: str

    def error(self) -> dict[str, str]:
        """The job's error as ``jobq status ID --json`` shows it and ``result()`` raises it."""
        message = f"job {self.job_id} was quarantined to {self.path}: {self.reason}"
        return {"type": QUARANTINED, "message": message, "traceback": ""}


def read(spool: SpoolDir, path: str) -> Record | Quarantined | None:
    """Read the outcome record at ``path``, quarantining it if it cannot be read.

    Returns:
        The record; what became of it if it was damaged; None if it is gone (purged,
        retried, or quarantined by someone else meanwhile: ``find`` finds that).
    """
    queue_dir = os.path.dirname(path)
    state, queue = os.path.basename(os.path.dirname(queue_dir)), os.path.basename(queue_dir)
    job_id = os.path.basename(path).removesuffix(L.JOB_SUFFIX)
    problem = None
    for _ in range(2):  # a damaged record stays damaged: read twice before moving it
        try:
            raw = spool.read_file(path)
        except FileNotFoundError:
            return None
        try:
            job, outcome = decode_record(raw)
        except CorruptJob as exc:
            problem = "an empty file" if not raw.strip() else str(exc)
            # A commit a power cut interrupted may have left the job file here, emptied,
            # with its record staged: completed, it reads (see ``complete_commit_of``).
            with contextlib.suppress(OSError):  # a read-only spool: reported as it is
                spool.complete_commit_of(queue, job_id)
            continue
        return Record(path, state, queue, job, outcome)
    reason = (
        f"unreadable outcome record of job {job_id} ({state}/{queue}/{job_id}.json): "
        f"{problem}. The job ended {state}, but what its record said is lost (a power cut "
        "while its worker ran with durability off leaves such files); it does not run "
        "again by itself: enqueue it anew if it must"
    )
    name = L.quarantined_record_name(state, queue, job_id)
    try:
        moved = spool.quarantine(path, reason, name=name)
    except OSError:  # a read-only spool: report it the same way, where it is
        return Quarantined(job_id, queue, state, path, reason)
    return None if moved is None else Quarantined(job_id, queue, state, moved, reason)


def quarantined(spool: SpoolDir, job_id: str) -> Quarantined | None:
    """The quarantined file of ``job_id`` (an outcome record or a job file), or None."""
    found = spool.find_quarantined(job_id)
    if found is None:
        return None
    path, told = found
    try:
        reason = spool.read_file(path + L.REASON_SUFFIX).decode("utf-8", "replace").strip()
    except OSError:
        reason = ""
    return Quarantined(
        job_id, told.queue, told.state, path, reason or "quarantined (no reason recorded)"
    )


def find(
    spool: SpoolDir,
    job_id: str,
    queues: Iterable[str] | None = None,
    *,
    look_in_invalid: bool = True,
) -> Record | Quarantined | None:
    """The outcome of ``job_id``: its record, or its quarantined file.

    Args:
        queues: the queues to look in (default: all).
        look_in_invalid: also look in ``invalid/`` when there is no record (a listing of
            it: pollers do it now and then, not on every poll).

    Returns:
        None if the job has not finished (it may be waiting or running) and is not
        quarantined.
    """
    for _ in range(3):  # the record may move between the lookup and the read
        path = spool.find_finished(job_id, queues)
        if path is None:
            break
        found = read(spool, path)
        if found is not None:
            return found
    return quarantined(spool, job_id) if look_in_invalid else None
