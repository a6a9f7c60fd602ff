"""Read-only queries over a spool: counts, one job, quarantined files, workers (listings of
jobs: ``jobq.joblist``).

Nothing here needs a running worker; ``jobq status`` and ``Spool.stats()`` are thin layers
over these functions. The one change a query may make is the one every reader makes: an
outcome record that is not a record (a power cut's leftover) is moved to ``invalid/`` by
whoever meets it first (``jobq.records``), on a spool it can write.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import orjson

from jobq import layout as L
from jobq import records
from jobq.errors import InvalidName, JobNotFound, JobqError, SpoolError
from jobq.layout import JobFileName, parse_running
from jobq.lease import lease_of
from jobq.model import CorruptJob, decode_job
from jobq.names import check_job_id
from jobq.periodic import read_schedules
from jobq.spool import SpoolDir, journal, list_names

__all__ = (
    "INVALID",
    "STATES",
    "NoSpool",
    "invalid_count",
    "invalid_files",
    "is_spool",
    "job_info",
    "read_if_there",
    "require_spool",
    "schedule_list",
    "spool_stats",
    "worker_list",
)

#: The pseudo-state of ``jobq jobs --state invalid``: quarantined files in ``invalid/``.
INVALID = L.INVALID

STATES = L.STATES
JOB_KEYS = (
    "id", "name", "queue", "state", "attempts", "enqueued_at", "started_at", "finished_at",
    "result", "error", "progress",
)  # fmt: skip
REASON_SUFFIX = L.REASON_SUFFIX


class NoSpool(JobqError):
    """Raised by ``require_spool`` when a path holds no spool (read-only commands exit 1)."""


def is_spool(spool: SpoolDir) -> bool:
    """Whether ``spool`` exists (its format marker is there); never creates anything.

    Raises:
        SpoolError: if the path cannot be looked at (permission denied).
    """
    try:
        os.stat(spool.path(L.FORMAT_FILE))
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        message = f"cannot read the spool at {spool.root}: {reason}"
        raise SpoolError(exc.errno or 0, message) from exc
    return True


def require_spool(spool: SpoolDir) -> None:
    """Check that ``spool`` exists before reading it, so a wrong path is not an empty spool,
    and that it is of this jobq's format, so that it is not misread.

    Raises:
        NoSpool: if there is no spool at that path.
        ConfigurationError: if it holds a spool of another format (or a damaged marker).
        SpoolError: if the path cannot be looked at (permission denied).
    """
    if not is_spool(spool):
        raise NoSpool(
            f"no spool at {spool.root} (give --spool PATH or set JOBQ_SPOOL; enqueueing a job "
            "or starting a worker creates one)"
        )
    spool.check_format()


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
        # A registration a power cut emptied says no lease: shown with the default one.
        expired = now - seen > lease_of(info)
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
    # Running first: a job at its fence name whose record the later listing finds counts once,
    # as finished (its worker removes the fence file right after).
    running: dict[str, int] = {}
    fenced: dict[str, set[str]] = {}
    for worker_id in spool.running_workers():
        for filename in list_names(spool.running_dir(worker_id)):
            queue = filename.partition("@")[0]
            if L.is_fence_name(filename):
                with contextlib.suppress(ValueError):
                    fenced.setdefault(queue, set()).add(parse_running(filename)[1].job_id)
            else:
                running[queue] = running.get(queue, 0) + 1
    queues: dict[str, dict[str, int]] = {}
    for queue in spool.queues():
        finished = {state: list_names(spool.path(state, queue)) for state in L.FINISHED_STATES}
        recorded = {n.removesuffix(L.JOB_SUFFIX) for names in finished.values() for n in names}
        queues[queue] = {
            L.PENDING: len(spool.pending_names(queue)),
            L.SCHEDULED: len(spool.scheduled_names(queue)),
            L.WAITING: len(list_names(spool.waiting_dir(queue))),
            L.RUNNING: running.get(queue, 0) + len(fenced.get(queue, set()) - recorded),
            **{state: len(names) for state, names in finished.items()},
        }
    ordered = {q: {s: counts[s] for s in STATES} for q, counts in queues.items()}
    return {
        "spool": spool.root,
        "queues": ordered,
        "workers": worker_list(spool),
        "invalid": invalid_count(spool),
    }


def _invalid_names(spool: SpoolDir) -> list[str]:
    return [n for n in list_names(spool.path(L.INVALID)) if not n.endswith(REASON_SUFFIX)]


def invalid_count(spool: SpoolDir) -> int:
    """How many quarantined files ``invalid/`` holds (their ``.reason`` files not counted)."""
    return len(_invalid_names(spool))


def invalid_files(spool: SpoolDir, *, limit: int | None = None) -> list[dict[str, Any]]:
    """Quarantined files, newest first: file, path, reason, quarantined_at, and the job's
    id, name and queue where the file still decodes as a job, else the id and queue its
    name tells (an outcome record's does), else None."""
    rows = []
    for name in _invalid_names(spool):
        path = spool.path(L.INVALID, name)
        reason_raw = read_if_there(path + REASON_SUFFIX)
        reason = reason_raw.decode("utf-8", "replace").strip() if reason_raw else None
        try:
            at: float | None = os.stat(path + REASON_SUFFIX if reason_raw else path).st_mtime
        except FileNotFoundError:
            at = None
        row: dict[str, Any] = {
            "file": name, "path": path, "state": INVALID, "reason": reason,
            "quarantined_at": at, "id": None, "name": None, "queue": None,
        }  # fmt: skip
        raw = read_if_there(path)
        try:
            job = decode_job(raw) if raw is not None else None
        except (CorruptJob, ValueError):
            job = None
        if job is not None:
            row.update(id=job.id, name=job.name, queue=job.queue)
        else:
            with contextlib.suppress(InvalidName):  # an empty record still has its name
                told = L.parse_quarantined(name)
                row.update(id=told.job_id, queue=told.queue)
        rows.append(row)
    rows.sort(key=lambda r: r["quarantined_at"] or 0.0, reverse=True)
    return rows if limit is None else rows[:limit]


def schedule_list(spool: SpoolDir) -> list[dict[str, Any]]:
    """The periodic jobs workers registered (``jobq schedules --json``): name, queue, schedule,
    tz, next_tick, last_tick, last_job_id and last_state."""
    return read_schedules(spool)


def read_if_there(path: str) -> bytes | None:
    """The bytes of the file at ``path``, or None if there is none."""
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
        info = _invalid_info(records.quarantined(spool, job_id))
        if info is None:
            raise JobNotFound(f"no job {job_id} in spool {spool.root}")
    progress = read_if_there(spool.progress_path(job_id))
    try:
        info["progress"] = orjson.loads(progress) if progress else None
    except orjson.JSONDecodeError:
        info["progress"] = None  # caught while a worker replaced it: the next read has it
    if not details:
        return {key: info.get(key) for key in JOB_KEYS}
    return info


def _finished_info(spool: SpoolDir, job_id: str) -> dict[str, Any] | None:
    found = records.find(spool, job_id, look_in_invalid=False)
    if found is None:
        return None
    if isinstance(found, records.Quarantined):  # damaged: quarantined as we met it
        return _invalid_info(found)
    info = found.job.to_dict()
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
    info.update(found.outcome)
    info["state"] = found.state
    return info


def _invalid_info(found: records.Quarantined | None) -> dict[str, Any] | None:
    """A quarantined job as ``job_info`` shows it: state ``invalid``, the reason as its error,
    and what its file still tells (nothing, for an empty one)."""
    if found is None:
        return None
    info: dict[str, Any] = {
        "id": found.job_id, "name": None, "queue": found.queue, "args": None, "kwargs": None,
        "priority": None, "enqueued_at": None, "attempts": None, "started_at": None,
        "finished_at": None, "result": None, "error": found.error(), "worker": None,
    }  # fmt: skip
    raw = read_if_there(found.path)
    try:
        job = decode_job(raw) if raw else None
    except CorruptJob:
        job = None
    if job is not None and job.id == found.job_id:
        shown = job.to_dict()
        shown.pop("format", None)
        info.update(shown)
    name = os.path.basename(found.path).rpartition("@")[2]
    with contextlib.suppress(InvalidName):
        info["attempts"] = JobFileName.parse(name).attempts  # a job file's name counts starts
    info["state"] = INVALID
    return info


def _waiting_info(spool: SpoolDir, job_id: str) -> dict[str, Any] | None:
    found = spool.find_waiting(job_id)
    if found is None:
        return None
    state, where = found
    raw = read_if_there(where.path)
    if raw is None:
        return None
    try:
        job = decode_job(raw)
    except CorruptJob:
        # Emptied by a power cut, its bytes in a producer's journal: shown as they will be
        # once a worker mends the file (``jobq.spool.journal``); read-only here.
        try:
            job = decode_job(journal.lookup(spool.root, job_id) or b"")
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
