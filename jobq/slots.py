"""Which attempts a worker holds, and how many more jobs it may claim.

An attempt holds a slot while its function runs (``running``). Once the committer has its
outcome it gives the slot back but still holds its job file in ``running/WORKER/`` until the
record is committed (``recording``): a durable worker then runs its next jobs while a group
commit waits for its fsyncs, and their outcomes gather into the next group, so bigger groups
share the commit's flushes. A commit that stalls does not let the worker run ahead of it
without bound: at most ``max(concurrency, RECORDING_AHEAD)`` attempts are held at once.

Failure story: nothing here touches the spool. A worker that dies holds what it held: the
reaper gives back every job file in its running directory, recorded or not, after its lease.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobq.settle import Attempt

__all__ = ("RECORDING_AHEAD", "Slots")

#: Attempts running or done may wait this many at most (or ``concurrency``, if more) for
#: their outcome records while the worker runs the next. Measured on journaled ext4 (mounted
#: noauto_da_alloc), durable, 2 processes x 10 slots, medians of 3 alternating rounds: 20
#: held gave 2,840 jobs/s, 40 3,650, 80 4,150, no bound 4,340.
RECORDING_AHEAD = 100


class Slots:
    """The attempts of one worker, by job id.

    As a container it holds the ids of every job whose file the worker holds (the stray
    sweep after a spool error, which runs in a thread, spares them).

    Args:
        concurrency: how many job functions may run at once.

    Attributes:
        running: attempts whose function runs, each in one of ``concurrency`` slots.
        recording: attempts whose outcome the committer is recording (no slot).
    """

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.running: dict[str, Attempt] = {}
        self.recording: dict[str, Attempt] = {}

    def __contains__(self, job_id: object) -> bool:
        return job_id in self.running or job_id in self.recording

    def __bool__(self) -> bool:
        return bool(self.running or self.recording)

    def attempts(self) -> list[Attempt]:
        """Every attempt holding a job file: running, or having its outcome recorded."""
        return [*self.running.values(), *self.recording.values()]

    def free(self) -> int:
        """How many jobs may be claimed now (0 or less: none)."""
        running = len(self.running)  # each of them will wait for its record too
        ahead = max(self.concurrency, RECORDING_AHEAD) - running - len(self.recording)
        return min(self.concurrency - running, ahead)

    def start(self, run: Attempt) -> None:
        """``run`` takes a slot."""
        self.running[run.job.id] = run

    def hand_over(self, run: Attempt) -> bool:
        """The committer has ``run``'s outcome: its slot is free. False if it had none."""
        job_id = run.job.id
        if job_id not in self.running:
            return False  # handed over already (a record written again after an error)
        # Into ``recording`` before out of ``running``: a sweep in a thread must find it in
        # one or the other.
        self.recording[job_id] = run
        del self.running[job_id]
        return True

    def end(self, job_id: str) -> None:
        """The attempt of ``job_id`` is over: its job file is recorded or handed back."""
        self.running.pop(job_id, None)
        self.recording.pop(job_id, None)
