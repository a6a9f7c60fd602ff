"""Settling attempts: what becomes of a job file once its attempt has ended.

An attempt ends in one of four ways: a retry (the file goes back to ``pending/`` or
``scheduled/``), an outcome record (``done``, ``failed`` or ``cancelled``), a requeue at
shutdown, or nothing at all when the lease was lost (the reaper owns the job then). Outcome
records flow to one committer task that records whatever has gathered in one group commit.

Failure story (see ``jobq.spool.commits``): the commit moves the job file to its fence name
beside it, then renames the staged record into place (the commit point). A crash before the
fence leaves the job in ``running/`` for the reaper, which runs it again; a crash after it
leaves the fence file and the staged record, and the reaper completes the commit: an outcome
once decided stands.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from jobq import dependencies, expiry, fileio
from jobq import layout as L
from jobq.inline import gate_for
from jobq.model import Outcome, encode_record
from jobq.outage import Outage, is_unreachable
from jobq.registry import lookup
from jobq.report import Reporter
from jobq.runner import Ending, backoff_delay
from jobq.spool import Finish

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from jobq.context import JobContext
    from jobq.model import Job
    from jobq.spool import Claimed, SpoolDir

__all__ = ("UNRECORDED_DELAY", "Attempt", "Settler")

logger = logging.getLogger("jobq.worker")

#: When not even a failure record can be written (the disk is full), the job waits this long in
#: ``scheduled/`` before it runs again: space has to be freed first.
UNRECORDED_DELAY = 300.0


@dataclass(eq=False)
class Attempt:
    """One running attempt of a job in this worker.

    Attributes:
        claimed: the job file this worker holds in ``running/WORKER/``.
        job: the decoded job.
        ctx: what ``jobq.current_job()`` returns inside it.
        scope: cancels the attempt.
        reason: why we cancelled it: ``cancel``, ``shutdown`` or ``lost``.
        started_at: when it started (epoch seconds).
        unrecordable: the filesystem refused its outcome record once already.
    """

    claimed: Claimed
    job: Job
    ctx: JobContext
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    reason: str | None = None
    started_at: float = field(default_factory=time.time)
    unrecordable: bool = False


# One outcome for the committer: the finish, and a box that gets True (recorded), False
# (fenced) or the OSError that kept it from being recorded.
_Commit = tuple[Finish, list["bool | OSError"]]


class Settler:
    """Turns ended attempts into retries, requeues and group-committed outcome records.

    Args:
        spool: the spool.
        worker_id: returns the worker's current id (it changes when a lost lease makes the
            worker register again).
        lease: the worker's lease, the least time an unrecordable job waits to run again.
        report: told of each outcome, retry and fenced attempt (log lines and hooks).
        outage: the worker's outage state: the committer reports and rides out outages.
        lease_lost: whether the worker's lease is lost (a reaper may own its jobs now).
        handed: told when an attempt's outcome is in the committer's hands (its function
            has ended; the record is not written yet).
    """

    def __init__(
        self,
        spool: SpoolDir,
        worker_id: Callable[[], str],
        lease: float,
        report: Reporter | None = None,
        *,
        outage: Outage | None = None,
        lease_lost: Callable[[], bool] = lambda: False,
        handed: Callable[[Attempt], None] = lambda run: None,
    ) -> None:
        self.spool = spool
        self._gate = gate_for(spool.root, spool.durable)
        self._worker_id = worker_id
        self.lease = lease
        self.report = report if report is not None else Reporter(spool.root, worker_id)
        #: Seconds ``done`` records are kept for jobs without a ``result_ttl`` of their own.
        self.result_ttl: float | None = None
        self._ttls: dict[str, float] = {}  # job id -> ttl of a done record being committed
        self.outage = outage if outage is not None else Outage()
        self.lease_lost = lease_lost
        self._handed = handed
        self._send: MemoryObjectSendStream[_Commit]
        self._receive: MemoryObjectReceiveStream[_Commit]
        self._send, self._receive = anyio.create_memory_object_stream[_Commit](math.inf)
        #: Set once the outcomes sent since the committer took its last batch are committed.
        self._gathering: anyio.Event | None = None

    def close(self) -> None:
        """The worker is done: close the committer's stream (it has ended, or never started)."""
        self._send.close()
        self._receive.close()

    async def settle(self, run: Attempt, ending: Ending) -> None:
        """Retry, record or requeue the job of ``run`` according to how its attempt ended."""
        held, job = run.claimed, run.job
        if ending.kind == "interrupted":
            await self._interrupted(run)
            return
        if ending.kind in ("retry", "error") and job.may_retry(held.name.attempts):
            delay = (
                ending.delay if ending.delay is not None else backoff_delay(job, held.name.attempts)
            )
            if ending.error is not None:
                run.ctx.note(
                    logging.WARNING,
                    "attempt %d failed, retrying in %.2f s:\n%s",
                    held.name.attempts,
                    delay,
                    ending.error["traceback"],
                )
                await self.flush_log(run)
            due = None if delay <= 0 else round((time.time() + delay) * 1_000_000)
            if not await anyio.to_thread.run_sync(
                self.spool.requeue, held.path, held.queue, held.name, due
            ):
                self._fenced(run)
                return
            self.report.retrying(run, delay, ending.error)
            return
        if ending.kind == "retry":
            ending = Ending(
                "error",
                error={
                    "type": "jobq.Retry",
                    "message": "retries exhausted",
                    "traceback": "jobq.Retry raised with no retries left\n",
                },
            )
        state = L.DONE if ending.kind == "done" else L.FAILED
        await self._record(run, state, ending.result, ending.error)

    async def _interrupted(self, run: Attempt) -> None:
        held = run.claimed
        if run.reason == "cancel":
            await self._record(run, L.CANCELLED, None, None)
            await anyio.to_thread.run_sync(self.spool.clear_cancel, run.job.id)
        elif run.reason == "shutdown":
            await anyio.to_thread.run_sync(self.spool.requeue, held.path, held.queue, held.name)
            self.report.requeued(run)
        else:  # "lost": the lease is gone; the reaper owns the job now.
            self.report.lost(run)

    async def _record(
        self, run: Attempt, state: str, result: Any, error: dict[str, str] | None
    ) -> None:
        outcome = Outcome(
            state,
            run.claimed.name.attempts,
            run.started_at,
            time.time(),
            result=result,
            error=error,
            worker=self._worker_id(),
        )
        finish = Finish(
            run.claimed.path, run.claimed.queue, run.job.id, state, encode_record(run.job, outcome)
        )
        spec = lookup(run.job.name)
        ttl = spec.result_ttl if spec is not None and spec.result_ttl is not None else None
        ttl = self.result_ttl if ttl is None else ttl
        if state == L.DONE and ttl is not None:
            self._ttls[run.job.id] = ttl
        # One event for all the outcomes the committer takes in one batch, and no checkpoint
        # on the way (the stream has no bound): a short job's outcome costs what it must.
        if self._gathering is None:
            self._gathering = anyio.Event()
        done = self._gathering
        box: list[bool | OSError] = []
        self._send.send_nowait((finish, box))
        self._handed(run)
        await done.wait()
        if box and isinstance(box[0], OSError):
            await self._unrecorded(run, box[0])
        elif not box or not box[0]:
            self._fenced(run)
        else:
            self.report.recorded(run, outcome)

    async def _unrecorded(self, run: Attempt, exc: OSError) -> None:
        """The filesystem refused the outcome record (disk full, I/O error): never lose the job.

        That is a failure of this attempt, retried like any other (a small failure record may
        still fit where a big result did not). If that cannot be recorded either, the job goes
        back to ``scheduled/`` for a lease. Either way the worker keeps serving the jobs whose
        outcomes it can record, rather than dying and leaving them all to the lease.
        """
        if not run.unrecordable:
            run.unrecordable = True
            message = f"cannot record the outcome: {exc}"
            error = {"type": "jobq.SpoolError", "message": message, "traceback": message + "\n"}
            await self.settle(run, Ending("error", error=error))
            return
        held = run.claimed
        delay = max(UNRECORDED_DELAY, self.lease)
        due = round((time.time() + delay) * 1_000_000)
        await anyio.to_thread.run_sync(self.spool.requeue, held.path, held.queue, held.name, due)
        self.report.unrecorded(run, exc, delay)

    def _fenced(self, run: Attempt) -> None:
        self.report.fenced(run)

    async def committer(self) -> None:
        """Record outcomes as they come, each batch that gathered meanwhile in one commit."""
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                while True:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                # Every outcome sent so far is in the batch: later ones wait for the next.
                done, self._gathering = self._gathering, None
                results = await self._commit_batch([b[0] for b in batch])
                for (_, box), ok in zip(batch, results, strict=True):
                    box.append(ok)
                if done is not None:
                    done.set()

    async def _commit_batch(self, finishes: list[Finish]) -> list[bool | OSError]:
        """Record a batch, and do once what follows from it (``_follow_up``).

        In a thread the batch goes whole, with its follow-up in the same hop (durable: parts
        would each pay their own fsyncs); inline it goes in parts that each stall the loop
        about half the budget (``jobq.inline``), sized again before each part.
        """
        if not self._gate.inline:
            return await self._commit_part(finishes, follow_up=True)
        results: list[bool | OSError] = []
        while len(results) < len(finishes):
            rest = finishes[len(results) :]
            part = rest[: self._gate.batch_size()] if self._gate.inline else rest
            results += await self._commit_part(part, follow_up=False)
        with anyio.CancelScope(shield=True):  # as the commits' calls (see _commit_part)
            await self._gate.call(functools.partial(self._follow_up, finishes, results))
        return results

    async def _commit_part(self, finishes: list[Finish], follow_up: bool) -> list[bool | OSError]:
        try:
            commit = functools.partial(self._commit, finishes, follow_up)
            # Shielded: an inline call checkpoints first, and a stop must not land between
            # two parts of a batch whose attempts ran (a batch in a thread goes whole). What
            # follows an error (riding out an outage) stays cancellable.
            with anyio.CancelScope(shield=True):
                return list(await self._gate.call(commit, items=len(finishes)))
        except OSError as exc:
            if is_unreachable(exc):
                results = list(await self._ride_out(finishes, exc))
            else:
                # One record that does not fit must not sink the others in its batch.
                results = [await self._commit_alone(fin) for fin in finishes]
        if follow_up:
            await anyio.to_thread.run_sync(self._follow_up, finishes, results)
        return results

    def _commit(self, finishes: list[Finish], follow_up: bool) -> list[bool]:
        results = self.spool.commit(finishes)
        if follow_up:
            self._follow_up(finishes, list(results))
        return results

    def _follow_up(self, finishes: Sequence[Finish], results: Sequence[bool | OSError]) -> None:
        """What follows from recorded outcomes: dependents released, expiry marked.

        Finished by housekeeping if it fails or the worker dies first, so its errors are
        logged and never undo a commit. One call per batch: releasing lists ``deps/``.
        """
        committed = {f.job_id for f, ok in zip(finishes, results, strict=True) if ok is True}
        ttls = [(f.queue, f.job_id, self._ttls.pop(f.job_id)) for f in finishes
                if f.job_id in self._ttls]  # fmt: skip
        if not committed:
            return
        try:
            dependencies.release(self.spool, [f.job_id for f in finishes if f.job_id in committed])
            expiry.mark(self.spool, [t for t in ttls if t[1] in committed])
        except OSError as exc:
            logger.warning("after recording outcomes (housekeeping retries): %s", exc)

    async def _ride_out(self, finishes: list[Finish], exc: OSError) -> list[bool | OSError]:
        """Commit ``finishes`` once the spool answers again, unless the lease ran out first.

        The outcomes are kept rather than turned into failures: the jobs ran, and the spool
        being away says nothing about them. Once the lease is lost they are fenced: a reaper
        owns the jobs and runs them again.
        """
        self.outage.failed("recording outcomes", exc)
        while True:
            await anyio.sleep(self.outage.next_delay())
            if self.lease_lost():
                return [False] * len(finishes)
            began = time.monotonic()
            try:
                results = await anyio.to_thread.run_sync(self._recommit, finishes)
            except OSError as again:
                if is_unreachable(again):
                    continue
                return [await self._commit_alone(fin) for fin in finishes]
            self.outage.recovered(began)
            return list(results)

    def _recommit(self, finishes: list[Finish]) -> list[bool]:
        """Commit again after an error that may have struck anywhere in the first commit.

        Commits left halfway are completed like a dead worker's (``complete_commits``): a
        staged record beside a fence file is a decided outcome. A job file still at its fence
        name after that goes back to its place and is committed again; one gone counts as
        recorded if its record is there.
        """
        self.spool.complete_commits(os.getpid())
        for fin in finishes:
            self._unfence(fin)
        todo = [fin for fin in finishes if os.path.lexists(fin.src)]
        results = self.spool.commit(todo) if todo else []
        recorded = dict(zip((fin.job_id for fin in todo), results, strict=True))
        return [
            recorded[fin.job_id]
            if fin.job_id in recorded
            else os.path.exists(self.spool.finished_path(fin.state, fin.queue, fin.job_id))
            for fin in finishes
        ]

    def _unfence(self, finish: Finish) -> None:
        # Only while the lease on the job holds (not for a retired id's job): after that the
        # file at the fence name may be a reaper's (committing the job as lost), and its
        # commit must not be undone.
        ours = self.spool.running_dir(self._worker_id()) + os.sep
        if finish.src.startswith(ours) and not self.lease_lost():
            self.spool.unfence(finish.src)

    async def _commit_alone(self, finish: Finish) -> bool | OSError:
        # As after an outage: the error may have struck past the job file's first move.
        try:
            return (await anyio.to_thread.run_sync(self._recommit, [finish]))[0]
        except OSError as exc:  # SpoolError is an OSError too
            logger.error("job %s: cannot record its outcome: %s", finish.job_id, exc)
            return exc

    # -- logs and progress -----------------------------------------------------------------

    async def flush_log(self, run: Attempt) -> None:
        """Append the log lines the attempt captured since the last flush to its log file."""
        lines = run.ctx.lines
        count = len(lines)
        if not count:
            return
        text = "".join(lines[:count])
        del lines[:count]
        try:
            await fileio.append_text(self.spool.log_path(run.job.id), text)
        except OSError as exc:  # a full disk loses log lines, not the job or the worker
            logger.warning("job %s: %d log line(s) lost: %s", run.job.id, count, exc)

    async def write_progress(self, ctx: JobContext) -> None:
        """Record the progress a job reported (``await current_job().progress(...)``)."""
        await fileio.write_bytes(self.spool.progress_path(ctx.id), orjson.dumps(ctx.progress_state))
