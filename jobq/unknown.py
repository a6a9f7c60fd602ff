"""Jobs whose name this worker does not know: leave them to a worker that does, for a while.

During a rolling deploy, a producer that already runs the new code may enqueue a job that only
the new workers have registered while old workers still serve the queue. An old worker that
claims such a job puts it back in ``scheduled/`` for a short delay (1 s, doubling up to 30 s)
rather than failing it, so that a worker that knows the name can take it. The put-back is not
an attempt: the job's start count stays as it was. Once this worker has met the job for
``grace`` seconds (``jobq worker --unknown-grace``, default 300 s), the job fails with
``jobq.UnknownJob``. A burst worker (grace 0) fails unknown jobs at once: nothing else may come
to take them.

The clock is this worker's: it starts when the worker first claims the job, so a delayed job
gets its whole grace once it is due. Every worker that does not know the name keeps its own
clock, so a job fails at most about ``grace + 30 s`` after the first of them met it.

Failure story: the put-back is one rename (``running/W/x`` to ``scheduled/Q/DUE-x``). A crash
before it leaves the job in ``running/`` for the reaper, which puts it back to pending (counting
the start); a worker that restarts forgets its clocks and gives the jobs it meets a new grace.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from jobq.model import Job
    from jobq.spool import Claimed, SpoolDir

__all__ = ("RECHECK_FIRST", "RECHECK_MAX", "UnknownJobs", "unknown_job_error")

logger = logging.getLogger("jobq.worker")

#: The first delay before a worker that knows the name can take the job; it doubles each time.
RECHECK_FIRST = 1.0
RECHECK_MAX = 30.0


@dataclasses.dataclass(slots=True)
class _Sighting:
    first: float  # time.monotonic() when this worker first claimed the job
    last: float
    times: int


def unknown_job_error(name: str, grace: float = 0.0) -> dict[str, str]:
    """The stored error of a job whose name no worker that took it had registered."""
    waited = f" (nor did a worker that has it take it within {grace:g} s)" if grace > 0 else ""
    message = (
        f"no job named {name!r} is registered in this worker{waited}: import the module that "
        "defines it (jobq worker APP...)"
    )
    return {"type": "jobq.UnknownJob", "message": message, "traceback": message + "\n"}


class UnknownJobs:
    """What one worker does with the jobs it claims but has no function for.

    Args:
        spool: the spool.
        grace: seconds to leave a job for other workers before failing it; 0 fails at once.
    """

    def __init__(self, spool: SpoolDir, grace: float) -> None:
        self.spool = spool
        self.grace = grace
        self._seen: dict[str, _Sighting] = {}
        self._pruned_at = time.monotonic()

    async def put_back(self, held: Claimed, job: Job) -> bool:
        """Leave the claimed job ``held`` to a worker that knows its name, if still in grace.

        Returns:
            True if the job went back to ``scheduled/`` (or was taken from us meanwhile);
            False if its grace is over and the caller fails it (see ``unknown_job_error``).
        """
        now = time.monotonic()
        self._forget_old(now)
        seen = self._seen.get(job.id)
        if seen is None:
            seen = self._seen[job.id] = _Sighting(now, now, 0)
            if self.grace > 0:
                logger.warning(
                    "job %s (%s) is not registered in this worker: leaving it to a worker "
                    "that has it for up to %g s (a rolling deploy? see docs/workers.md)",
                    job.name,
                    job.id,
                    self.grace,
                )
        left = seen.first + self.grace - now
        if left <= 0:
            del self._seen[job.id]
            return False
        seen.times += 1
        seen.last = now
        delay = min(RECHECK_FIRST * 2 ** (seen.times - 1), RECHECK_MAX, left)
        due = round((time.time() + delay) * 1_000_000)
        # Not an attempt: put the start the claim counted back.
        name = dataclasses.replace(held.name, attempts=max(0, held.name.attempts - 1))
        await anyio.to_thread.run_sync(self.spool.requeue, held.path, held.queue, name, due)
        logger.debug("job %s (%s) left to other workers for %.2f s", job.name, job.id, delay)
        return True

    def _forget_old(self, now: float) -> None:
        # A job not met again for a while was taken by another worker (or purged).
        if now - self._pruned_at < RECHECK_MAX:
            return
        self._pruned_at = now
        stale = [i for i, s in self._seen.items() if now - s.last > 2 * RECHECK_MAX + 5]
        for job_id in stale:
            del self._seen[job_id]
