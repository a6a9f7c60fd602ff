"""Operator actions on jobs: look up, cancel, retry dead jobs, purge old records.

Shared by ``JobHandle`` and the CLI, so both do exactly the same thing. Every state change goes
through ``SpoolDir`` renames, so these are safe while workers run.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

from jobq import dependencies, records
from jobq import layout as L
from jobq.errors import JobNotFound
from jobq.layout import JobFileName
from jobq.model import CorruptJob, Outcome, encode_record
from jobq.names import check_job_id
from jobq.spool import Finish, SpoolDir, list_names

__all__ = (
    "cancel_job",
    "job_queue",
    "job_state",
    "locate",
    "purge",
    "retry_failed",
    "retry_job",
)


def locate(spool: SpoolDir, job_id: str) -> tuple[str, str]:
    """The state and queue of ``job_id``.

    The state is ``invalid`` for a job whose file was quarantined, or whose outcome record
    is damaged (it is quarantined now: see ``jobq.records``).

    Raises:
        JobNotFound: if the spool has no such job.
    """
    check_job_id(job_id)
    for _ in range(3):  # the job may finish between the two lookups: look again
        finished = records.find(spool, job_id, look_in_invalid=False)
        if isinstance(finished, records.Record):
            return finished.state, finished.queue
        if finished is not None:
            break  # quarantined as we met it
        waiting = spool.find_waiting(job_id)
        if waiting is not None:
            return waiting[0], waiting[1].queue
    bad = records.quarantined(spool, job_id)
    if bad is not None:
        # An empty job file names no queue; any will do for a handle (its lookups of a
        # quarantined job do not depend on it).
        return L.INVALID, bad.queue or "default"
    raise JobNotFound(f"no job {job_id} in spool {spool.root}")


def job_state(spool: SpoolDir, job_id: str) -> str:
    """The state of ``job_id``.

    Raises:
        JobNotFound: if the spool has no such job.
    """
    return locate(spool, job_id)[0]


def job_queue(spool: SpoolDir, job_id: str) -> str:
    """The queue of ``job_id``.

    Raises:
        JobNotFound: if the spool has no such job.
    """
    return locate(spool, job_id)[1]


def cancel_job(spool: SpoolDir, job_id: str) -> bool:
    """Cancel a job: at once if pending or scheduled, at its worker's next check if running.

    Returns:
        True if it was cancelled (or its cancellation requested), False if already finished.

    Raises:
        JobNotFound: if the spool has no such job.
    """
    check_job_id(job_id)
    for _ in range(3):  # the job may move between our lookup and our rename
        if spool.find_finished(job_id) is not None:
            return False
        waiting = spool.find_waiting(job_id)
        if waiting is None:
            if spool.find_finished(job_id) is not None:
                return False
            if records.quarantined(spool, job_id) is not None:
                return False  # it will never run: nothing to cancel
            raise JobNotFound(f"no job {job_id} in spool {spool.root}")
        state, where = waiting
        queue, path = where.queue, where.path
        if state == L.RUNNING:
            spool.request_cancel(job_id)
            return True
        try:
            job = spool.read_job(path, job_id)
        except FileNotFoundError:
            continue
        except CorruptJob as exc:
            spool.quarantine(path, f"corrupt job file: {exc}")
            return True
        outcome = Outcome(L.CANCELLED, where.name.attempts, None, time.time())
        if spool.commit([Finish(path, queue, job_id, L.CANCELLED, encode_record(job, outcome))])[0]:
            dependencies.release(spool, [job_id])  # its dependents are cancelled in turn
            return True
    return False


def retry_job(spool: SpoolDir, job_id: str) -> bool:
    """Put a failed or cancelled job back to pending, keeping its id and attempt count.

    A job enqueued with ``after=`` goes back to ``waiting`` and its dependencies are checked
    again. Retrying a job does not bring back the dependents that its failure cancelled:
    retry those too.

    Returns:
        False if the job is not dead (it is waiting, running or done), or is ``invalid``:
        its file was quarantined, and what it held cannot run again.

    Raises:
        JobNotFound: if the spool has no such job.
    """
    check_job_id(job_id)
    record = records.find(spool, job_id, look_in_invalid=False)
    if record is None:
        job_state(spool, job_id)  # raises JobNotFound for unknown ids
        return False
    if isinstance(record, records.Quarantined) or record.state == L.DONE:
        return False
    path, job, outcome = record.path, record.job, record.outcome
    # A fresh retry budget: the starts so far stay counted, but no longer count against it.
    attempts = int(outcome.get("attempts", 0))
    # A cancel request left over from the last run would cancel the retried one at once.
    spool.clear_cancel(job_id)
    name = JobFileName(job.priority, round(time.time() * 1_000_000), job.id, attempts)
    job = replace(job, attempts_base=attempts)
    if not job.after:
        return spool.requeue_record(path, job, name)
    # A dependent waits for its dependencies again: the edges first, so no release misses it.
    dependencies.link(spool, [(job, name.filename)])
    if not spool.requeue_record(path, job, name):
        return False
    dependencies.check_new(spool, [(job, name.filename)])
    return True


def retry_failed(spool: SpoolDir, queue: str | None = None) -> list[str]:
    """Requeue every failed job (of ``queue``, or of all queues); returns their ids."""
    queues = [queue] if queue is not None else spool.queues()
    requeued = []
    for q in queues:
        for filename in sorted(list_names(spool.path(L.FAILED, q))):
            job_id = filename.removesuffix(L.JOB_SUFFIX)
            if retry_job(spool, job_id):
                requeued.append(job_id)
    return requeued


def purge(
    spool: SpoolDir, states: tuple[str, ...], older_than: float, queue: str | None = None
) -> int:
    """Remove outcome records (and logs) finished more than ``older_than`` seconds ago.

    Returns:
        How many records were removed.
    """
    cutoff = spool.now() - older_than
    removed = 0
    for q in [queue] if queue is not None else spool.queues():
        for state in states:
            directory = spool.path(state, q)
            for filename in list_names(directory):
                path = os.path.join(directory, filename)
                try:
                    if os.stat(path).st_mtime > cutoff:
                        continue
                except FileNotFoundError:
                    continue
                job_id = filename.removesuffix(L.JOB_SUFFIX)
                if spool.remove(path):
                    removed += 1
                    spool.remove(spool.log_path(job_id))
                    spool.remove(spool.progress_path(job_id))
                    spool.release_key(job_id)
    return removed
