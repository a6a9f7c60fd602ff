"""Result expiry: ``done`` records with a ``result_ttl`` are removed once it has passed.

When a worker records a ``done`` outcome whose job has a time to live (``@job(result_ttl=)``,
or the worker's ``--result-ttl``), it also writes an empty marker
``expiry/BUCKET/DUE-Q@ID`` (``DUE`` in µs, ``BUCKET`` the due minute). Housekeeping lists only
the buckets that are due, oldest first, and removes a bounded number of records per tick with
their logs, progress files and deduplication keys. A record is never removed before its due
time, so ``result()`` finds it for the whole ttl. ``failed`` records are dead letters: kept.

A record that a waiting job still depends on (``deps/ID/`` has edges) is kept a little
longer, so that its dependents can still see it ``done``.

Failure story: markers are hints written after the commit, without an fsync. A crash before
one is written (or a power cut that loses it) keeps that record until ``jobq purge``; a crash
while expiring leaves the marker, and the next tick (any worker's) finishes the removals,
each of which is idempotent.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING

from jobq import layout as L
from jobq.errors import InvalidName
from jobq.names import check_job_id, check_queue
from jobq.spool.files import DIR_MODE, FILE_MODE, list_names, translated

if TYPE_CHECKING:
    from collections.abc import Iterable

    from jobq.spool import SpoolDir

__all__ = ("BATCH", "expire_due", "mark")

#: At most this many records are removed per housekeeping tick.
BATCH = 500

#: A record that waiting jobs depend on is looked at again after this many seconds.
POSTPONE = 60.0

_BUCKET_US = 60_000_000


def mark(spool: SpoolDir, records: Iterable[tuple[str, str, float]]) -> None:
    """Mark ``done`` records to expire: ``(queue, job_id, ttl_seconds)`` each."""
    now_us = round(time.time() * 1_000_000)
    with translated("mark a record to expire"):
        for queue, job_id, ttl in records:
            _write_marker(spool, now_us + round(ttl * 1_000_000), queue, job_id)


def _write_marker(spool: SpoolDir, due_us: int, queue: str, job_id: str) -> None:
    bucket = spool.path(L.EXPIRY, f"{due_us // _BUCKET_US:012d}")
    path = os.path.join(bucket, f"{due_us:016d}-{queue}@{job_id}")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    except FileNotFoundError:
        os.makedirs(bucket, mode=DIR_MODE, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)


def expire_due(spool: SpoolDir, now: float | None = None, limit: int = BATCH) -> int:
    """Remove up to ``limit`` records whose time to live has passed; how many went.

    Args:
        now: the current time (epoch seconds); tests pass a fake clock.
    """
    now_us = round((time.time() if now is None else now) * 1_000_000)
    root = spool.path(L.EXPIRY)
    removed = 0
    handled = 0
    for bucket in sorted(list_names(root)):
        if not bucket.isdigit() or int(bucket) > now_us // _BUCKET_US:
            break
        directory = os.path.join(root, bucket)
        for marker in sorted(list_names(directory)):
            if handled >= limit:
                return removed
            due, _, rest = marker.partition("-")
            if not due.isdigit() or int(due) > now_us:
                break
            handled += 1
            removed += _expire_one(spool, os.path.join(directory, marker), rest, now_us)
        with contextlib.suppress(OSError):  # not empty: entries due later in this minute
            os.rmdir(directory)
    return removed


def _expire_one(spool: SpoolDir, marker: str, rest: str, now_us: int) -> int:
    queue, _, job_id = rest.partition("@")
    try:
        check_queue(queue)
        check_job_id(job_id)
    except InvalidName:
        spool.remove(marker)
        return 0
    if list_names(spool.path(L.DEPS, job_id)):
        _write_marker(spool, now_us + round(POSTPONE * 1_000_000), queue, job_id)
        spool.remove(marker)
        return 0
    with translated("expire a done record"):
        gone = spool.remove(spool.finished_path(L.DONE, queue, job_id))
        spool.remove(spool.log_path(job_id))
        spool.remove(spool.progress_path(job_id))
        spool.release_key(job_id)
        spool.remove(marker)
    return int(gone)
