"""``jobq jobs``: jobs listed state by state, in the order they will run or ran.

Waiting jobs come by their file names, which sort in run order (priority, then enqueue time;
scheduled ones by due time); finished ones by enqueue time, newest first. Read-only, as every
query (``jobq.inspect``): a damaged record met on the way is quarantined as by every reader.
"""

from __future__ import annotations

import functools
import math
import os
import re
from typing import TYPE_CHECKING, Any

import orjson

from jobq import layout as L
from jobq import records
from jobq.inspect import INVALID, STATES, invalid_files, read_if_there
from jobq.layout import parse_running
from jobq.model import CorruptJob, decode_record
from jobq.spool import list_names

if TYPE_CHECKING:
    from jobq.spool import SpoolDir

__all__ = ("list_jobs",)

_TIMED_ID = re.compile(r"[0-9a-f]{21}")  # new_job_id(): 11 hex digits of ms, 10 random


def list_jobs(
    spool: SpoolDir,
    *,
    state: str | None = None,
    queue: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Jobs as short dicts (id, name, queue, state, attempts, enqueued_at).

    State by state; within a state, across queues, waiting jobs come in the order they will
    run (priority, then enqueue time; scheduled ones by due time), finished ones by enqueue
    time, newest first (keyed ids too: their record says when). ``state="invalid"`` lists
    quarantined files instead (see ``invalid_files``).
    """
    if state == INVALID:
        found = invalid_files(spool)
        if queue is not None:
            found = [r for r in found if r["queue"] == queue]
        return found if limit is None else found[:limit]
    queues = [queue] if queue is not None else spool.queues()
    states = [state] if state is not None else list(STATES)
    rows: list[dict[str, Any]] = []
    for st in states:
        listed = [item for q in queues for item in _paths(spool, st, q)]
        listed.sort(key=functools.partial(_order, st), reverse=st in L.FINISHED_STATES)
        for path, attempts in listed:
            if limit is not None and len(rows) >= limit:
                return rows
            if st in L.FINISHED_STATES:
                record = records.read(spool, path)  # quarantines a damaged record
                if not isinstance(record, records.Record):
                    continue  # gone, or now listed by --state invalid
                job, outcome = record.job, record.outcome
            else:
                raw = read_if_there(path)
                if raw is None:
                    continue
                try:
                    job, outcome = decode_record(raw)
                except CorruptJob:
                    continue
            rows.append({
                "id": job.id, "name": job.name, "queue": job.queue, "state": st,
                "attempts": outcome.get("attempts", attempts), "enqueued_at": job.enqueued_at,
                "finished_at": outcome.get("finished_at"),
            })  # fmt: skip
    return rows


def _order(state: str, item: tuple[str, int | None]) -> tuple[float, str]:
    """Sort key of a listed job file: its name (which sorts in run order) for jobs still to
    run, its enqueue time for outcome records (``ID.json``)."""
    path = item[0]
    name = os.path.basename(path)
    if state == L.RUNNING:
        return (0.0, name.partition("@")[2])
    if state not in L.FINISHED_STATES:
        return (0.0, name)
    job_id = name.removesuffix(L.JOB_SUFFIX)
    if _TIMED_ID.fullmatch(job_id):
        return (int(job_id[:11], 16) / 1000.0, job_id)
    # A keyed, periodic or hand-made id says nothing about time: ask the record. Both kinds
    # compare to the millisecond (what a timed id holds); ties are in no particular order.
    raw = read_if_there(path)
    try:
        enqueued = orjson.loads(raw).get("enqueued_at") if raw else None
    except (orjson.JSONDecodeError, AttributeError):
        enqueued = None
    if not isinstance(enqueued, int | float):
        return (0.0, job_id)
    return (math.floor(enqueued * 1000) / 1000.0, job_id)


def _paths(spool: SpoolDir, state: str, queue: str) -> list[tuple[str, int | None]]:
    if state == L.PENDING:
        directory = spool.pending_dir(queue)
        return [(os.path.join(directory, n), _attempts(n)) for n in sorted(list_names(directory))]
    if state in (L.SCHEDULED, L.WAITING):
        directory = spool.scheduled_dir(queue) if state == L.SCHEDULED else spool.waiting_dir(queue)
        return [(os.path.join(directory, n), _attempts(n)) for n in sorted(list_names(directory))]
    if state == L.RUNNING:
        found: list[tuple[str, int | None]] = []
        for worker_id in spool.running_workers():
            directory = spool.running_dir(worker_id)
            for n in list_names(directory):
                try:
                    q, name = parse_running(n)
                except ValueError:
                    continue
                if q == queue and not _recorded_fence(spool, n):
                    found.append((os.path.join(directory, n), name.attempts))
        return found
    directory = spool.path(state, queue)
    return [(os.path.join(directory, n), None) for n in sorted(list_names(directory), reverse=True)]


def _recorded_fence(spool: SpoolDir, filename: str) -> bool:
    """Whether a running directory's ``filename`` is a fence file whose record is in place.

    Such a file is a finished job a commit has not tidied yet (or whose worker died just
    then): it counts as its record, not as running too.
    """
    if not L.is_fence_name(filename):
        return False
    try:
        queue, name = parse_running(filename)
    except ValueError:
        return False
    return spool.find_finished(name.job_id, [queue]) is not None


def _attempts(filename: str) -> int | None:
    stem = filename.removesuffix(L.JOB_SUFFIX)
    tail = stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None
