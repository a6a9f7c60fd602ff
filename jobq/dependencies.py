"""Dependencies: jobs enqueued with ``options(after=[...])`` wait until those jobs are done.

A waiting job lives in ``queues/Q/waiting/`` under its pending name, where no worker claims
it. For each of its dependencies an *edge* file ``deps/DEP_ID/Q@NAME`` points back at it, so
releasing the dependents of a finished job lists one small directory instead of scanning
every waiting job. When a job finishes, its worker settles each dependent:

- every dependency ``done``: the dependent is renamed into ``pending/`` (the release);
- one ``failed`` or ``cancelled`` (or ``invalid``: its job file was quarantined): the
  dependent is recorded ``cancelled`` with a ``jobq.DependencyFailed`` error, and its own
  dependents are settled in turn (transitively);
- otherwise it keeps waiting; the edge stays until the dependent leaves ``waiting/``, which
  also keeps the finished dependency's record from expiring under it.

Failure story: both moves out of ``waiting/`` are renames that exactly one actor wins, so a
release run twice (two workers, or a retry after a crash) neither loses nor doubles a job.
A worker killed halfway leaves edges behind; the housekeeping sweep (``sweep``) settles the
dependents of every finished job that still has edges, whoever finished it. A producer killed
after writing edges but before publishing its job leaves edges to nothing, which the next
settle removes; one killed before checking its new job's dependencies leaves a job that the
sweep settles.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import TYPE_CHECKING

from jobq import layout as L
from jobq import records
from jobq.errors import InvalidName
from jobq.layout import JobFileName
from jobq.model import CorruptJob, Outcome, encode_record
from jobq.names import check_job_id, check_queue
from jobq.spool import Finish, list_names
from jobq.spool.files import DIR_MODE, translated

if TYPE_CHECKING:
    from collections.abc import Iterable

    from jobq.model import Job
    from jobq.spool import SpoolDir

__all__ = ("link", "release", "settle", "sweep")

logger = logging.getLogger("jobq.worker")


def _edge_dir(spool: SpoolDir, dep_id: str) -> str:
    return spool.path(L.DEPS, dep_id)


def _edge(queue: str, filename: str) -> str:
    return f"{queue}@{filename}"


def link(spool: SpoolDir, jobs: Iterable[tuple[Job, str]]) -> None:
    """Write the edges of jobs about to be put in ``waiting/`` (one fsync a directory).

    Args:
        jobs: each job with the file name it will have in ``waiting/``.
    """
    touched = set()
    with translated("record job dependencies"):
        for job, filename in jobs:
            for dep in job.after:
                directory = _edge_dir(spool, dep)
                os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
                path = os.path.join(directory, _edge(job.queue, filename))
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
                touched.add(directory)
        for directory in sorted(touched):
            spool.fsync_dir(directory)


def _unlink_edges(spool: SpoolDir, job: Job, filename: str) -> None:
    for dep in job.after:
        spool.remove(os.path.join(_edge_dir(spool, dep), _edge(job.queue, filename)))
        with contextlib.suppress(OSError):  # not empty: other dependents still wait on it
            os.rmdir(_edge_dir(spool, dep))


def _finished_state(spool: SpoolDir, job_id: str) -> str | None:
    """How a dependency ended: its record's state, or None while it has not finished.

    A dependency whose outcome record was quarantined (damaged by a power cut) ended in the
    state the record had: its dependents are settled by that, not held forever. One whose
    job file was quarantined never runs: ``invalid``, which cancels them.
    """
    path = spool.find_finished(job_id)
    if path is not None:
        return os.path.basename(os.path.dirname(os.path.dirname(path)))
    bad = records.quarantined(spool, job_id)
    return None if bad is None else bad.state or L.INVALID


def settle(spool: SpoolDir, queue: str, filename: str) -> tuple[str, Job | None]:
    """Release, cancel or leave one waiting job, judging by its dependencies' states.

    Returns:
        What happened (``released``, ``cancelled``, ``waiting`` or ``gone`` when it was not
        in ``waiting/`` any more) and the job (None if gone).
    """
    path = os.path.join(spool.waiting_dir(queue), filename)
    try:
        job = spool.read_job(path, JobFileName.parse(filename).job_id)
    except FileNotFoundError:
        return "gone", None
    except CorruptJob as exc:
        spool.quarantine(path, f"corrupt job file: {exc}")
        return "gone", None
    blocking = None
    ready = True
    for dep in job.after:
        state = _finished_state(spool, dep)
        if state in (L.FAILED, L.CANCELLED, L.INVALID):
            blocking = (dep, state)
            break
        if state != L.DONE:
            ready = False
    with translated("release a waiting job"):
        if blocking is not None:
            dep, state = blocking
            message = f"dependency {dep} ended {state}"
            if state == L.INVALID:
                message += f" (its file was quarantined: see `jobq status {dep}`)"
            error = {
                "type": "jobq.DependencyFailed",
                "message": message,
                "traceback": message + "\n",
                "dependency": dep,
            }
            outcome = Outcome(L.CANCELLED, 0, None, time.time(), error=error)
            finish = Finish(path, queue, job.id, L.CANCELLED, encode_record(job, outcome))
            if not spool.commit([finish])[0]:
                return "gone", None
            _unlink_edges(spool, job, filename)
            logger.info("job %s (%s) cancelled: %s", job.name, job.id, message)
            return "cancelled", job
        if not ready:
            return "waiting", job
        if not spool.rename(path, os.path.join(spool.pending_dir(queue), filename)):
            return "gone", None
        spool.fsync_dir(spool.pending_dir(queue))
    _unlink_edges(spool, job, filename)
    return "released", job


def release(spool: SpoolDir, job_ids: Iterable[str]) -> int:
    """Settle the dependents of jobs that just finished, transitively; how many moved."""
    # One listing for a whole batch: most finished jobs have no dependents at all.
    having = set(list_names(spool.path(L.DEPS)))
    todo = [job_id for job_id in job_ids if job_id in having]
    moved = 0
    while todo:
        dep = todo.pop()
        directory = _edge_dir(spool, dep)
        for edge in list_names(directory):
            queue, _, filename = edge.partition("@")
            try:
                JobFileName.parse(filename)
                outcome, job = settle(spool, check_queue(queue), filename)
            except InvalidName:
                spool.quarantine(os.path.join(directory, edge), "not a dependency edge name")
                continue
            if outcome == "gone":
                spool.remove(os.path.join(directory, edge))
            elif outcome in ("released", "cancelled"):
                moved += 1
            if outcome == "cancelled" and job is not None:
                todo.append(job.id)
        with contextlib.suppress(OSError):
            os.rmdir(directory)
    return moved


def sweep(spool: SpoolDir) -> int:
    """Settle the dependents of every finished job that still has edges; how many moved.

    This finishes what a worker killed in ``release`` left, and what a producer killed
    between publishing a waiting job and checking it left.
    """
    finished = []
    for dep in list_names(spool.path(L.DEPS)):
        try:
            check_job_id(dep)
        except InvalidName:
            continue
        if _finished_state(spool, dep) is not None:
            finished.append(dep)
    return release(spool, finished) if finished else 0


def check_new(spool: SpoolDir, jobs: Iterable[tuple[Job, str]]) -> None:
    """Settle jobs just put in ``waiting/``: a dependency may have finished already.

    Args:
        jobs: each job with its file name in ``waiting/``.
    """
    cancelled = []
    for job, filename in jobs:
        if settle(spool, job.queue, filename)[0] == "cancelled":
            cancelled.append(job.id)
    if cancelled:
        release(spool, cancelled)
