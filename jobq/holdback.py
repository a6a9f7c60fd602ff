"""Held-back jobs: claimed jobs a worker put back to ``pending/`` and passes over for a while.

A worker sometimes claims a job it must not start yet: a limit is full (``jobq.limits``), or
it does not know the job's name (``jobq.unknown``). It then puts the job back to ``pending/``
under its unstarted name (no attempt counted, so another worker may take it at once) and
remembers, in memory only, not to claim it again before a given time. The claim loop asks
``passes_over`` for each listed name and wakes up at ``next_look`` to try again.

Failure story: the put-back is one rename (``running/W/Q@x`` back to ``queues/Q/pending/x``). A
crash before it leaves the job in ``running/`` for the reaper, which requeues it (counting the
start); the remembered times die with the worker, which only means another look.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobq.spool import Claimed, SpoolDir

__all__ = ("HoldBack",)


class HoldBack:
    """The jobs one worker put back and passes over until a time of its own clock.

    Args:
        spool: the spool.
    """

    def __init__(self, spool: SpoolDir) -> None:
        self.spool = spool
        self._until: dict[str, float] = {}  # job id -> time.monotonic() to look again
        self._why: dict[str, str] = {}  # job id -> what it waits for

    def put_back(self, held: Claimed, until: float, why: str) -> None:
        """Return the claimed job to ``pending/`` unstarted; pass over it until ``until``.

        Args:
            held: the claimed job.
            until: ``time.monotonic()`` at which to claim it again.
            why: what it waits for (see ``look_again``).
        """
        unstarted = dataclasses.replace(held.name, attempts=max(0, held.name.attempts - 1))
        self.spool.requeue(held.path, held.queue, unstarted)
        self._until[held.job_id] = until
        self._why[held.job_id] = why

    def passes_over(self, filename: str) -> bool:
        """Whether the pending job ``filename`` is held back for now (do not claim it)."""
        if not self._until:
            return False
        parts = filename.split("-", 3)
        until = self._until.get(parts[2]) if len(parts) == 4 else None
        if until is None:
            return False
        if until <= time.monotonic():
            del self._until[parts[2]]
            self._why.pop(parts[2], None)
            return False
        return True

    def next_look(self) -> float | None:
        """When (epoch seconds) the earliest held-back job should be looked at again."""
        if not self._until:
            return None
        return time.time() + max(0.0, min(self._until.values()) - time.monotonic())

    def look_again(self, why: str) -> None:
        """What the jobs held back for ``why`` wait for may be there now: try them next scan."""
        for job_id in [j for j, w in self._why.items() if w == why]:
            del self._why[job_id]
            self._until.pop(job_id, None)
