"""The worker: claim jobs, run them, record outcomes, keep the lease, shut down gracefully.

One poll iteration, in the manner of arq: promote due jobs, claim up to the free slots in one
thread hop, start each as a task; outcomes flow to one committer task that records whatever
has gathered in one group commit. A housekeeping task watches the heartbeat, cancel
requests, log flushing, the reaper and the temp-file collector.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import random
import secrets
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import anyio
import orjson

from jobq import fileio
from jobq import layout as L
from jobq.api import Spool, spool_dir
from jobq.backlog import Backlog
from jobq.context import CaptureHandler, JobContext, new_context
from jobq.errors import ConfigurationError, InvalidName
from jobq.lease import Heartbeat, reap_expired, requeue_held
from jobq.model import CorruptJob, Job, Outcome, decode_job, encode_record
from jobq.names import check_queue
from jobq.registry import lookup, registered_names
from jobq.runner import Ending, backoff_delay, run_attempt
from jobq.spool import Claimed, Finish, SpoolDir
from jobq.waiting import Wakeup, poll_backoff, watching

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from anyio.abc import TaskGroup

__all__ = ("Worker",)

logger = logging.getLogger("jobq.worker")

#: In burst mode, scheduled jobs due within this many seconds still count as work to wait for.
BURST_HORIZON = 60.0

#: When not even a failure record can be written (the disk is full), the job waits this long in
#: ``scheduled/`` before it runs again: space has to be freed first.
UNRECORDED_DELAY = 300.0


class _Scan(NamedTuple):
    """What one claim scan found."""

    claimed: list[tuple[Claimed, Job]]
    next_due: float | None  # when the earliest scheduled job is due (epoch seconds)
    more_later: bool  # jobs pending or due within BURST_HORIZON (burst mode waits for them)
    contended: bool  # another worker won some claims: its leftovers are not the queue's end


@dataclass(eq=False)
class _Running:
    claimed: Claimed
    job: Job
    ctx: JobContext
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    reason: str | None = None  # why we cancelled it: "cancel", "shutdown" or "lost"
    started_at: float = field(default_factory=time.time)
    unrecordable: bool = False  # the filesystem refused its outcome record once already


# One outcome for the committer: the finish, an event set when it is done, and a box that gets
# True (recorded), False (fenced) or the OSError that kept it from being recorded.
_Commit = tuple[Finish, anyio.Event, list["bool | OSError"]]


def _new_worker_id() -> str:
    host = "".join(c if c.isalnum() or c in "_-" else "-" for c in socket.gethostname())[:40]
    return f"{host or 'host'}.{os.getpid()}.{secrets.token_hex(3)}"


class Worker:
    """Runs jobs from a spool until stopped (or, in burst mode, until nothing is runnable).

    Args:
        spool: a ``jobq.Spool``, a path, or None for the configured spool.
        queues: queues to serve, in no particular order (priority decides across them);
            default: the queues of the registered jobs, plus ``default``.
        concurrency: jobs running at once.
        lease: seconds a silent worker keeps its jobs before any other worker may take them.
        grace: seconds a graceful shutdown waits for running jobs.
        durable: fsync outcomes (default: the spool's setting).
        handle_signals: stop gracefully on SIGTERM/SIGINT (second signal: at once). Needs the
            main thread.
        watch: wake up on file events (inotify) when idle; default: yes unless
            ``$JOBQ_NO_WATCH=1``. Polling stays on either way (events are only a hint on
            network filesystems).

    Raises:
        ConfigurationError: if a setting is out of range.
        InvalidName: if a queue name is invalid.
    """

    def __init__(
        self,
        spool: Spool | str | os.PathLike[str] | None = None,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        lease: float = 30.0,
        grace: float = 30.0,
        durable: bool | None = None,
        handle_signals: bool = False,
        watch: bool | None = None,
    ) -> None:
        if isinstance(spool, Spool):
            self.spool: SpoolDir = spool.dir if durable is None else spool_dir(spool.path, durable)
        else:
            self.spool = spool_dir(spool, durable)
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        if not lease > 0 or not grace >= 0:
            raise ConfigurationError("lease must be > 0 and grace >= 0 seconds")
        if queues is None:
            found = {spec.queue for name in registered_names() if (spec := lookup(name))}
            queues = sorted(found | {"default"})
        self.queues = [check_queue(q) for q in queues]
        if not self.queues:
            raise ConfigurationError("a worker needs at least one queue")
        self.concurrency = concurrency
        self.lease = float(lease)
        self.grace = float(grace)
        self.handle_signals = handle_signals
        self.watch = watch
        self._backlog = Backlog(self.spool.pending_names, self.queues)
        self.id = _new_worker_id()
        self.processed = 0
        self._running: dict[str, _Running] = {}
        self._stopping = False
        self._changed: anyio.Event | None = None  # created in run(): needs the event loop
        self._heartbeat: Heartbeat | None = None
        self.hard_stopped = False

    # -- lifecycle -------------------------------------------------------------------------

    def _register(self) -> None:
        info = {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": self.queues,
            "concurrency": self.concurrency,
            "lease": self.lease,
            "started_at": time.time(),
        }
        self.spool.register_worker(self.id, info)
        self._heartbeat = Heartbeat(self.spool, self.id, self.lease)
        self._heartbeat.start()

    def stop(self) -> None:
        """Stop claiming new jobs; running ones finish (within ``grace`` under signals)."""
        self._stopping = True
        self._notify()

    def _notify(self) -> None:
        # Wake every task waiting for a change (a freed slot, a stop); later waiters get a
        # fresh event.
        if self._changed is not None:
            self._changed.set()
            self._changed = anyio.Event()

    async def _wait_change(self) -> None:
        assert self._changed is not None
        await self._changed.wait()

    async def run(self, *, burst: bool = False) -> None:
        """Run jobs until stopped; with ``burst=True`` return once nothing is runnable."""
        self._changed = anyio.Event()
        for queue in self.queues:
            await anyio.to_thread.run_sync(self.spool.ensure_queue, queue)
        await anyio.to_thread.run_sync(self._register)
        handler = CaptureHandler()
        logging.getLogger().addHandler(handler)
        send, receive = anyio.create_memory_object_stream[_Commit](math.inf)
        self._commits = send
        clean = True
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._committer, receive)
                outer.start_soon(self._housekeeping)
                if self.handle_signals:
                    outer.start_soon(self._signals, outer)
                async with anyio.create_task_group() as jobs:
                    await self._claim_loop(jobs, burst)
                outer.cancel_scope.cancel()
        except BaseException:
            clean = False
            raise
        finally:
            send.close()
            logging.getLogger().removeHandler(handler)
            if self._heartbeat is not None:
                self._heartbeat.stop()
            if clean and not self.hard_stopped and not self._running:
                await anyio.to_thread.run_sync(self.spool.deregister_worker, self.id)

    async def _signals(self, outer: TaskGroup) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self._stopping:
                    logger.warning("second signal: stopping now (jobs recover by lease)")
                    self.hard_stopped = True
                    outer.cancel_scope.cancel()
                    return
                logger.info(
                    "%s: finishing running jobs (grace %g s)",
                    signal.Signals(signum).name,
                    self.grace,
                )
                self.stop()
                outer.start_soon(self._grace_timer)

    async def _grace_timer(self) -> None:
        await anyio.sleep(self.grace)
        for run in list(self._running.values()):
            run.reason = "shutdown"
            run.scope.cancel()

    # -- claiming --------------------------------------------------------------------------

    async def _claim_loop(self, jobs: TaskGroup, burst: bool) -> None:
        """Claim while slots are free; when idle, wait for a file event, a due time or a poll.

        The file events (see ``jobq.waiting``) only cut the wait short: each wait still ends
        with a scan, so a missed or missing event delays a job by one poll, never loses it.
        Once a scan has seen everything (it claimed fewer jobs than it had slots for), a freed
        slot alone does not start another scan; a file event, the poll or a due time does.
        """
        wake = Wakeup(on_raise=self._notify)
        with watching(self._watched_dirs(), wake.raise_threadsafe, enabled=self.watch) as live:
            # Trusted events leave polling as a slow safety net; else polling is how we learn.
            idle = poll_backoff(live, first=0.001, cap=0.1)
            look_at = 0.0  # time.monotonic() of the next scan that no event asked for
            while not self._stopping:
                free = self.concurrency - len(self._running)
                left = look_at - time.monotonic()
                if free <= 0 or (left > 0 and not wake.raised and not burst):
                    with anyio.move_on_after(left if free > 0 else math.inf):
                        await self._wait_change()
                    continue
                wake.clear()  # before the scan: a file landing during it raises the flag again
                # A job that ends during the scan may requeue itself behind the scan's back.
                finished_before = self.processed
                scan = await anyio.to_thread.run_sync(self._claim_batch, free)
                claimed, next_due = scan.claimed, scan.next_due
                for held, job in claimed:
                    self._start(jobs, held, job)
                if len(claimed) == free or scan.contended:
                    # Maybe more: look again as soon as a slot frees. After lost races the
                    # listing is another worker's leftovers, not the end of the queue.
                    idle.reset()
                    look_at = 0.0 if len(claimed) == free else time.monotonic() + 0.001
                    continue
                if burst and not self._running and not scan.more_later:
                    if self.processed == finished_before:
                        return
                    continue  # look again: the scan may predate a retry's requeue
                if claimed:
                    idle.reset()
                pause = idle.next()
                if next_due is not None:
                    pause = min(pause, max(0.0, next_due - time.time()))
                look_at = time.monotonic() + pause
                if burst and not wake.raised:  # burst mode looks on every change, so wait here
                    with anyio.move_on_after(pause):
                        await self._wait_change()

    def _watched_dirs(self) -> list[str]:
        return [
            d
            for queue in self.queues
            for d in (self.spool.pending_dir(queue), self.spool.scheduled_dir(queue))
        ]

    def _claim_batch(self, limit: int) -> _Scan:
        """Promote due jobs, then claim up to ``limit`` jobs in priority order (one thread hop).

        Claims come from the backlog (a sorted listing kept between calls, see
        ``jobq.backlog``), listed again once used up.
        """
        now_us = round(time.time() * 1_000_000)
        next_due: int | None = None
        for queue in self.queues:
            moved, due = self.spool.promote_due_next(queue, now_us)
            if moved:
                self._backlog.invalidate()
            if due is not None and (next_due is None or due < next_due):
                next_due = due
        self._backlog.refresh_if_stale()
        claimed: list[tuple[Claimed, Job]] = []
        listed = seen = contended = False
        while len(claimed) < limit:
            entry = self._backlog.pop()
            if entry is None:
                if listed:
                    break
                listed = True
                seen = self._backlog.relist() > 0 or seen
                continue
            seen = True
            held = self._claim_one(*entry)
            if held == "lost":
                contended = True
                # Another worker is claiming right here: jump past its batch rather than race
                # it name by name. The skipped names stay pending; the next listing has them.
                self._backlog.skip(limit + random.randrange(limit + 1))
                continue
            if held == "invalid":
                continue
            job = self._load(held)
            if job is not None:
                claimed.append((held, job))
        soon = next_due is not None and next_due <= now_us + BURST_HORIZON * 1_000_000
        return _Scan(
            claimed, None if next_due is None else next_due / 1_000_000, soon or seen, contended
        )

    def _claim_one(self, filename: str, queue: str) -> Claimed | Literal["lost", "invalid"]:
        """Claim one listed job; "lost" if another worker won it, "invalid" if quarantined."""
        try:
            return self.spool.claim(self.id, queue, filename) or "lost"
        except InvalidName as exc:
            self.spool.quarantine(os.path.join(self.spool.pending_dir(queue), filename), str(exc))
            return "invalid"

    def _load(self, held: Claimed) -> Job | None:
        try:
            job = decode_job(self.spool.read_file(held.path))
        except CorruptJob as exc:
            self.spool.quarantine(held.path, f"corrupt job file: {exc}")
            return None
        if job.id != held.job_id or job.queue != held.queue:
            self.spool.quarantine(held.path, "job file's id or queue does not match its name")
            return None
        return job

    def _start(self, jobs: TaskGroup, held: Claimed, job: Job) -> None:
        ctx = new_context(job.id, job.name, job.queue, held.name.attempts, self._write_progress)
        run = _Running(held, job, ctx)
        self._running[job.id] = run
        jobs.start_soon(self._run_job, run)

    # -- running ---------------------------------------------------------------------------

    async def _run_job(self, run: _Running) -> None:
        run.ctx.activate()
        try:
            spec = lookup(run.job.name)
            if spec is None:
                ending = Ending("fatal", error=_unregistered(run.job.name))
            else:
                ending = await run_attempt(spec, run.job, run.scope)
            await self._flush_log(run)
            await self._settle(run, ending)
        finally:
            self._running.pop(run.job.id, None)
            self.processed += 1
            self._notify()

    async def _settle(self, run: _Running, ending: Ending) -> None:
        held, job = run.claimed, run.job
        if ending.kind == "interrupted":
            await self._interrupted(run)
            return
        if ending.kind in ("retry", "error") and job.may_retry(held.name.attempts):
            delay = (
                ending.delay if ending.delay is not None else backoff_delay(job, held.name.attempts)
            )
            if ending.error is not None:
                run.ctx.log.warning(
                    "attempt %d failed, retrying in %.2f s:\n%s",
                    held.name.attempts,
                    delay,
                    ending.error["traceback"],
                )
                await self._flush_log(run)
            due = None if delay <= 0 else round((time.time() + delay) * 1_000_000)
            if not await anyio.to_thread.run_sync(
                self.spool.requeue, held.path, held.queue, held.name, due
            ):
                self._fenced(run)
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

    async def _interrupted(self, run: _Running) -> None:
        held = run.claimed
        if run.reason == "cancel":
            await self._record(run, L.CANCELLED, None, None)
            await anyio.to_thread.run_sync(self.spool.clear_cancel, run.job.id)
        elif run.reason == "shutdown":
            logger.warning("job %s still running after the grace period: requeued", run.job.id)
            await anyio.to_thread.run_sync(self.spool.requeue, held.path, held.queue, held.name)
        # "lost": the lease is gone; the reaper owns the job now.

    async def _record(
        self, run: _Running, state: str, result: Any, error: dict[str, str] | None
    ) -> None:
        outcome = Outcome(
            state,
            run.claimed.name.attempts,
            run.started_at,
            time.time(),
            result=result,
            error=error,
            worker=self.id,
        )
        finish = Finish(
            run.claimed.path, run.claimed.queue, run.job.id, state, encode_record(run.job, outcome)
        )
        done = anyio.Event()
        box: list[bool | OSError] = []
        await self._commits.send((finish, done, box))
        await done.wait()
        if box and isinstance(box[0], OSError):
            await self._unrecorded(run, box[0])
        elif not box or not box[0]:
            self._fenced(run)

    async def _unrecorded(self, run: _Running, exc: OSError) -> None:
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
            await self._settle(run, Ending("error", error=error))
            return
        held = run.claimed
        delay = max(UNRECORDED_DELAY, self.lease)
        due = round((time.time() + delay) * 1_000_000)
        await anyio.to_thread.run_sync(self.spool.requeue, held.path, held.queue, held.name, due)
        logger.error("job %s: no outcome recorded (%s); it runs again in %g s", run.job.id, exc,
                     delay)  # fmt: skip

    def _fenced(self, run: _Running) -> None:
        logger.warning(
            "job %s: outcome discarded, another attempt owns the job now "
            "(this worker's lease expired)",
            run.job.id,
        )

    async def _committer(self, receive: Any) -> None:
        async with receive:
            async for first in receive:
                batch = [first]
                while True:
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                finishes = [b[0] for b in batch]
                results: list[bool | OSError]
                try:
                    results = list(await anyio.to_thread.run_sync(self.spool.commit, finishes))
                except OSError:
                    # One record that does not fit must not sink the others in its batch.
                    results = [await self._commit_alone(fin) for fin in finishes]
                for (_, event, box), ok in zip(batch, results, strict=True):
                    box.append(ok)
                    event.set()

    async def _commit_alone(self, finish: Finish) -> bool | OSError:
        try:
            return (await anyio.to_thread.run_sync(self.spool.commit, [finish]))[0]
        except OSError as exc:  # SpoolError is an OSError too
            logger.error("job %s: cannot record its outcome: %s", finish.job_id, exc)
            return exc

    # -- logs and progress -----------------------------------------------------------------

    async def _flush_log(self, run: _Running) -> None:
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

    async def _write_progress(self, ctx: JobContext) -> None:
        await fileio.write_bytes(self.spool.progress_path(ctx.id), orjson.dumps(ctx.progress_state))

    # -- housekeeping ----------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        tick = min(0.25, self.lease / 4)
        last_flush = last_reap = 0.0
        last_gc = -math.inf  # collect tmp/ once at start: a restart after a crash cleans up
        while True:
            await anyio.sleep(tick)
            now = time.monotonic()
            if self._heartbeat is not None and self._heartbeat.lost.is_set():
                await self._chore("re-registering after a lost lease", self._lease_lost)
            if self._running:
                await self._chore("reading cancel requests", self._serve_cancels)
            if now - last_flush >= 0.5:
                last_flush = now
                for run in list(self._running.values()):
                    await self._chore("writing a job log", self._flush_log, run)
            if now - last_reap >= self.lease / 2:
                last_reap = now
                await self._chore(
                    "reaping", anyio.to_thread.run_sync, reap_expired, self.spool, self.id
                )
            if now - last_gc >= 300:
                last_gc = now
                await self._chore(
                    "collecting tmp/", anyio.to_thread.run_sync, self.spool.collect_tmp, 3600.0
                )
                await self._chore(
                    "collecting cancel requests",
                    anyio.to_thread.run_sync,
                    self.spool.collect_cancel_requests,
                )

    async def _chore(self, what: str, func: Callable[..., Awaitable[object]], *args: Any) -> None:
        """Run one housekeeping step; a filesystem error is logged, not fatal (next tick retries).

        A worker that dies on a transient error (NFS hiccup, full disk) would strand its jobs
        for a lease; one that keeps going retries the step a tick later.
        """
        try:
            await func(*args)
        except OSError as exc:  # SpoolError is an OSError too
            logger.warning("%s failed (retrying): %s", what, exc)

    async def _serve_cancels(self) -> None:
        requested = await anyio.to_thread.run_sync(self.spool.cancel_requests)
        for job_id in requested & self._running.keys():
            run = self._running[job_id]
            run.reason = "cancel"
            run.scope.cancel()

    async def _lease_lost(self) -> None:
        """Stop our jobs (their outcomes would be fenced anyway) and come back as a new worker.

        The new registration comes first: claims from here on go to the new id, so the old
        id's jobs are a closed set to stop, wait for and hand back.
        """
        old_id = self.id
        logger.warning("worker %s lost its lease; stopping its jobs and re-registering", old_id)
        self.id = _new_worker_id()
        await anyio.to_thread.run_sync(self._register)
        old_dir = self.spool.running_dir(old_id) + os.sep
        while stale := [r for r in self._running.values() if r.claimed.path.startswith(old_dir)]:
            for run in stale:
                run.reason = "lost"
                run.scope.cancel()
            await self._wait_change()
        for held in await anyio.to_thread.run_sync(self.spool.running_jobs, old_id):
            await anyio.to_thread.run_sync(
                functools.partial(requeue_held, self.spool, held, who=old_id)
            )
        await anyio.to_thread.run_sync(self.spool.deregister_worker, old_id)
        logger.info("worker %s is back as %s", old_id, self.id)


def _unregistered(name: str) -> dict[str, str]:
    message = (
        f"no job named {name!r} is registered in this worker: import the module that defines "
        "it (jobq worker APP...)"
    )
    return {"type": "jobq.UnknownJob", "message": message, "traceback": message + "\n"}
