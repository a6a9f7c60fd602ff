"""Jobs whose name this worker does not know: leave them to a worker that does, for a while.

During a rolling deploy, a producer that already runs the new code may enqueue a job that only
the new workers have registered while old workers still serve the queue. An old worker that
claims such a job puts it back in ``pending/`` unstarted (see ``jobq.holdback``), where a
worker that knows the name can take it at once, and passes over it itself for a while (1 s,
doubling up to 30 s) rather than failing it. Once this worker has met the job for ``grace``
seconds (``jobq worker --unknown-grace``, default 300 s), it lets the job start, and the
attempt fails with ``jobq.UnknownJob``. A burst worker (grace 0) fails unknown jobs at once:
nothing else may come to take them.

The clock is this worker's: it starts when the worker first claims the job, so a delayed job
gets its whole grace once it is due. Every worker that does not know the name keeps its own
clock, so a job fails at most about ``grace + 30 s`` after the first of them met it.

Failure story: the put-back is one rename, as for any held-back job (``jobq.holdback``). A
worker that restarts forgets its clocks and gives the jobs it meets a new grace.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING

from jobq.registry import lookup

if TYPE_CHECKING:
    from jobq.holdback import HoldBack
    from jobq.model import Job
    from jobq.spool import Claimed

__all__ = ("RECHECK_FIRST", "RECHECK_MAX", "UnknownJobs", "unknown_job_error")

logger = logging.getLogger("jobq.worker")

#: How long this worker first passes over such a job; it doubles each time it meets it again.
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
        holdback: where such jobs are put back while in grace (shared with the worker).
        grace: seconds to leave a job for other workers before failing it; 0 fails at once.
    """

    def __init__(self, holdback: HoldBack, grace: float) -> None:
        self.holdback = holdback
        self.grace = grace
        self._seen: dict[str, _Sighting] = {}
        self._pruned_at = time.monotonic()

    def admit(self, job: Job, held: Claimed) -> bool:
        """Whether the claimed job may start here; if not, it was left to other workers.

        A job whose name is registered may start. One whose name is not goes back to
        ``pending/`` while in grace (False); once its grace is over it may start (True), and
        the attempt fails with ``jobq.UnknownJob`` (see ``unknown_job_error``).
        """
        if lookup(job.name) is not None or self.grace <= 0:
            return True
        now = time.monotonic()
        self._forget_old(now)
        seen = self._seen.get(job.id)
        if seen is None:
            seen = self._seen[job.id] = _Sighting(now, now, 0)
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
            return True
        seen.times += 1
        seen.last = now
        delay = min(RECHECK_FIRST * 2 ** (seen.times - 1), RECHECK_MAX, left)
        self.holdback.put_back(held, now + delay, "name")
        logger.debug("job %s (%s) left to other workers for %.2f s", job.name, job.id, delay)
        return False

    def _forget_old(self, now: float) -> None:
        # A job not met again for a while was taken by another worker (or purged).
        if now - self._pruned_at < RECHECK_MAX:
            return
        self._pruned_at = now
        stale = [i for i, s in self._seen.items() if now - s.last > 2 * RECHECK_MAX + 5]
        for job_id in stale:
            del self._seen[job_id]
