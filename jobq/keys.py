"""Deduplication keys: ``keys/ID`` taken with ``O_EXCL`` before a keyed job is published.

Shared by keyed enqueues (``options(key=...)``) and periodic ticks, whose key is the tick.

Failure story: a producer that dies between taking a key and publishing its job leaves a key
with no job. Whoever enqueues the same key next takes it over once it is ``STALE_KEY_AGE``
old and no job holds it, so the key is never lost for good.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jobq import admin
from jobq.errors import JobNotFound

if TYPE_CHECKING:
    from jobq.model import Job
    from jobq.spool import SpoolDir

__all__ = ("STALE_KEY_AGE", "holder_queue")

#: A key whose job cannot be found is taken over after this many seconds: its producer died
#: between taking the key and publishing the job.
STALE_KEY_AGE = 10.0


def holder_queue(spool: SpoolDir, job: Job, due: int | None) -> tuple[str, bool]:
    """For a keyed job whose key was taken: the queue of the job that holds the key.

    If no job holds it and the key is stale, ``job`` is published in its place.

    Returns:
        The holder's queue, and True if this call published ``job`` itself.
    """
    for _ in range(3):
        try:
            return admin.job_queue(spool, job.id), False
        except JobNotFound:
            pass
        age = spool.key_age(job.id)
        if age is None or age > STALE_KEY_AGE:
            spool.release_key(job.id)
            if spool.publish([job], due)[0]:
                return job.queue, True
        else:
            break  # another producer is publishing it right now
    return job.queue, False
