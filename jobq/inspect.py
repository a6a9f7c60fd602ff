"""Read-only queries over a spool: counts, one job, job listings, workers.

Nothing here changes the spool or needs a running worker; ``jobq status`` and
``Spool.stats()`` are thin layers over these functions.
"""

from __future__ import annotations

import os
import time
from typing import Any

import orjson

from jobq import layout as L
from jobq.errors import JobNotFound, SpoolError
from jobq.layout import parse_running
from jobq.model import CorruptJob, decode_job, decode_record
from jobq.names import check_job_id
from jobq.spool import SpoolDir, list_names

__all__ = ("STATES", "job_info", "list_jobs", "spool_stats", "worker_list")

STATES = (L.PENDING, L.SCHEDULED, L.RUNNING, L.DONE, L.FAILED, L.CANCELLED)
JOB_KEYS = (
    "id", "name", "queue", "state", "attempts", "enqueued_at", "started_at", "finished_at",
    "result", "error",
)  # fmt: skip


def worker_list(spool: SpoolDir, *, include_expired: bool = False) -> list[dict[str, Any]]:
    """Registered workers whose lease is live (by the spool's clock), oldest first."""
    if not os.path.exists(spool.path(L.FORMAT_FILE)):
        return []  # not a spool (yet): reading must not create one
    try:
        now = spool.now()
    except SpoolError:
        now = time.time()  # a read-only spool: our clock is the best guess left
    workers = []
    for worker_id, seen, info in spool.workers():
        lease = info.get("lease", 30.0)
        expired = now - seen > (float(lease) if isinstance(lease, int | float) else 30.0)
        if expired and not include_expired:
            continue
        entry = {
            "id": worker_id,
            "host": info.get("host"),
            "pid": info.get("pid"),
            "last_seen": seen,
        }
        if include_expired:
            entry["expired"] = expired
        workers.append(entry)
    return sorted(workers, key=lambda w: str(w["id"]))


def spool_stats(spool: SpoolDir) -> dict[str, Any]:
    """Counts per queue and state, and the live workers (``jobq status --json``)."""
    queues: dict[str, dict[str, int]] = {}
    for queue in spool.queues():
        queues[queue] = {
            L.PENDING: len(spool.pending_names(queue)),
            L.SCHEDULED: len(spool.scheduled_names(queue)),
            L.RUNNING: 0,
            **{state: len(list_names(spool.path(state, queue))) for state in L.FINISHED_STATES},
        }
    for worker_id in spool.running_workers():
        for filename in list_names(spool.running_dir(worker_id)):
            queue = filename.partition("@")[0]
            if queue in queues:
                queues[queue][L.RUNNING] += 1
    ordered = {q: {s: counts[s] for s in STATES} for q, counts in queues.items()}
    return {"spool": spool.root, "queues": ordered, "workers": worker_list(spool)}


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def job_info(spool: SpoolDir, job_id: str, *, details: bool = False) -> dict[str, Any]:
    """One job as ``jobq status JOB_ID --json`` shows it.

    Args:
        details: also include ``args``, ``kwargs``, ``priority``, ``worker`` and ``progress``.

    Raises:
        JobNotFound: if the spool has no such job.
    """
    check_job_id(job_id)
    for _ in range(3):  # the job may move between the lookup and the read
        info = _finished_info(spool, job_id) or _waiting_info(spool, job_id)
        if info is not None:
            break
    else:
        raise JobNotFound(f"no job {job_id} in spool {spool.root}")
    progress = _read(spool.progress_path(job_id))
    if not details:
        return {key: info.get(key) for key in JOB_KEYS}
    info["progress"] = orjson.loads(progress) if progress else None
    return info


def _finished_info(spool: SpoolDir, job_id: str) -> dict[str, Any] | None:
    path = spool.find_finished(job_id)
    if path is None:
        return None
    raw = _read(path)
    if raw is None:
        return None
    try:
        job, outcome = decode_record(raw)
    except CorruptJob:
        return None
    info = job.to_dict()
    info.pop("format", None)
    info.update(
        {
            "attempts": 0,
            "started_at": None,
            "finished_at": None,
            "result": None,
            "error": None,
            "worker": None,
        }
    )
    info.update(outcome)
    info["state"] = os.path.basename(os.path.dirname(os.path.dirname(path)))
    return info


def _waiting_info(spool: SpoolDir, job_id: str) -> dict[str, Any] | None:
    found = spool.find_waiting(job_id)
    if found is None:
        return None
    state, where = found
    raw = _read(where.path)
    if raw is None:
        return None
    try:
        job = decode_job(raw)
    except CorruptJob:
        return None
    info = job.to_dict()
    info.pop("format", None)
    started = None
    worker = None
    if state == L.RUNNING:
        worker = os.path.basename(os.path.dirname(where.path))
        try:
            started = os.stat(where.path).st_ctime  # the claim rename sets ctime
        except FileNotFoundError:
            started = None
    info.update(
        {
            "state": state,
            "attempts": where.name.attempts,
            "started_at": started,
            "finished_at": None,
            "result": None,
            "error": None,
            "worker": worker,
        }
    )
    return info


def list_jobs(
    spool: SpoolDir,
    *,
    state: str | None = None,
    queue: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Jobs as short dicts (id, name, queue, state, attempts, enqueued_at).

    Waiting jobs come in the order they will run; finished ones newest first.
    """
    queues = [queue] if queue is not None else spool.queues()
    states = [state] if state is not None else list(STATES)
    rows: list[dict[str, Any]] = []
    for st in states:
        for q in queues:
            for path, attempts in _paths(spool, st, q):
                if limit is not None and len(rows) >= limit:
                    return rows
                raw = _read(path)
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


def _paths(spool: SpoolDir, state: str, queue: str) -> list[tuple[str, int | None]]:
    if state == L.PENDING:
        directory = spool.pending_dir(queue)
        return [(os.path.join(directory, n), _attempts(n)) for n in sorted(list_names(directory))]
    if state == L.SCHEDULED:
        directory = spool.scheduled_dir(queue)
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
                if q == queue:
                    found.append((os.path.join(directory, n), name.attempts))
        return found
    directory = spool.path(state, queue)
    return [(os.path.join(directory, n), None) for n in sorted(list_names(directory), reverse=True)]


def _attempts(filename: str) -> int | None:
    stem = filename.removesuffix(L.JOB_SUFFIX)
    tail = stem.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None
