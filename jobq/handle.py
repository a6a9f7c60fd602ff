"""Handles to enqueued jobs: wait for a result, read the state, cancel, read the log."""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import anyio

from jobq import admin, fileio, records
from jobq.errors import DependencyFailed, JobCancelled, JobFailed, JobNotFound
from jobq.layout import CANCELLED, FAILED, FINISHED_STATES, JOB_SUFFIX
from jobq.waiting import Wakeup, poll_backoff, watching

if TYPE_CHECKING:
    from jobq.spool import SpoolDir

__all__ = ("JobHandle",)

T = TypeVar("T")

#: Seconds between a waiting ``result()``'s looks in ``invalid/`` for a quarantined job.
INVALID_LOOK_INTERVAL = 1.0

#: Seconds between a waiting ``result()``'s looks for its job anywhere in the spool; missed in
#: two looks in a row, the job is gone (purged, its record expired): ``JobNotFound``. Two, so
#: that a job caught between two directories is not taken for gone.
GONE_LOOK_INTERVAL = 5.0


class JobHandle(Generic[T]):
    """A reference to one enqueued job, returned by ``enqueue``.

    Attributes:
        id: the job's id (also shown by ``jobq jobs`` and taken by ``jobq status JOB_ID``).
        queue: the queue it was enqueued to.
    """

    def __init__(self, spool: SpoolDir, job_id: str, queue: str) -> None:
        self._spool = spool
        self.id = job_id
        self.queue = queue

    def __repr__(self) -> str:
        return f"JobHandle(id={self.id!r}, queue={self.queue!r}, spool={self._spool.root!r})"

    def _finished(self, look_in_invalid: bool) -> tuple[str, dict[str, Any]] | None:
        """The job's state and outcome once it has one; a quarantined job reads as failed
        with the error ``jobq.Quarantined`` (see ``jobq.records``)."""
        try:
            found = records.find(
                self._spool, self.id, [self.queue], look_in_invalid=look_in_invalid
            )
        except OSError:
            return None  # the spool did not answer this time: the next poll asks again
        if isinstance(found, records.Quarantined):
            return FAILED, {"error": found.error()}
        if found is None or not found.complete:
            return None  # not finished, or caught between the two renames of a commit
        return found.state, found.outcome

    def _poll(self, last_look: list[float]) -> tuple[str, dict[str, Any]] | None:
        """``_finished``, looking in ``invalid/`` on the first poll and then once a second.

        A job quarantined by someone else (a worker that met its corrupt job file, another
        reader that met its damaged record) would otherwise be waited for forever.
        """
        now = time.monotonic()
        look = now - last_look[0] >= INVALID_LOOK_INTERVAL
        if look:
            last_look[0] = now
        return self._finished(look)

    async def result(self, timeout: float | None = None) -> T:
        """Wait for the job to finish and return its result.

        Args:
            timeout: seconds to wait; None waits for as long as it takes.

        Raises:
            JobFailed: the job ended in ``failed``; carries the remote error and traceback.
                Also when its file was quarantined (a corrupt job file, an outcome record a
                power cut damaged): then ``error_type`` is ``jobq.Quarantined``.
            JobCancelled: the job was cancelled.
            JobNotFound: the job is gone from the spool (purged, or its record expired
                before it was read; see ``GONE_LOOK_INTERVAL``).
            TimeoutError: the job did not finish within ``timeout``.
        """
        wake = Wakeup()
        try:
            with (
                anyio.fail_after(timeout),
                watching(
                    self._record_dirs(), wake.raise_threadsafe, name=self._record_name
                ) as live,
            ):
                backoff = poll_backoff(live, first=0.0005, cap=0.05)
                last_look = [-math.inf]
                gone = _Gone()
                while True:
                    wake.clear()
                    found = self._poll(last_look)
                    if found is not None:
                        return self._unwrap(*found)
                    if gone.due():  # listings: in a thread
                        if gone.looked(await anyio.to_thread.run_sync(self._nowhere)):
                            raise self._gone_error()
                        continue  # the record may have landed meanwhile: look again first
                    await wake.wait(min(backoff.next(), gone.left()))
        except TimeoutError:
            raise TimeoutError(f"job {self.id} did not finish within {timeout:g} s") from None

    def result_sync(self, timeout: float | None = None) -> T:
        """``result()`` for sync code (scripts, Flask, Django); same errors."""
        deadline = None if timeout is None else time.monotonic() + timeout
        wake = threading.Event()
        with watching(self._record_dirs(), wake.set, name=self._record_name) as live:
            backoff = poll_backoff(live, first=0.0005, cap=0.05)
            last_look = [-math.inf]
            gone = _Gone()
            while True:
                wake.clear()
                found = self._poll(last_look)
                if found is not None:
                    return self._unwrap(*found)
                if gone.due():
                    if gone.looked(self._nowhere()):
                        raise self._gone_error()
                    continue
                pause = min(backoff.next(), gone.left())
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"job {self.id} did not finish within {timeout:g} s")
                    pause = min(pause, left)
                wake.wait(pause)

    def _nowhere(self) -> bool:
        """Whether the job is nowhere in the spool: neither waiting, running, finished nor
        quarantined (an unanswered look counts as found)."""
        try:
            admin.locate(self._spool, self.id)
        except JobNotFound:
            return True
        except OSError:
            return False
        return False

    def _gone_error(self) -> JobNotFound:
        return JobNotFound(
            f"job {self.id} is gone from spool {self._spool.root} (purged, or its record expired)"
        )

    @property
    def _record_name(self) -> str:
        return self.id + JOB_SUFFIX

    def _record_dirs(self) -> list[str]:
        """Where the job's outcome record will land (one directory per finished state)."""
        return [self._spool.path(state, self.queue) for state in FINISHED_STATES]

    def _unwrap(self, state: str, outcome: dict[str, Any]) -> T:
        if state == FAILED:
            error = outcome.get("error") or {}
            raise JobFailed(
                self.id,
                str(error.get("type", "Error")),
                str(error.get("message", "")),
                str(error.get("traceback", "")),
            )
        if state == CANCELLED:
            error = outcome.get("error") or {}
            if error.get("type") == "jobq.DependencyFailed":
                dep = error.get("dependency")
                raise DependencyFailed(
                    self.id,
                    f"job {self.id} was cancelled: {error.get('message', 'a dependency failed')}",
                    dep if isinstance(dep, str) else None,
                )
            raise JobCancelled(self.id)
        return cast("T", outcome.get("result"))

    async def state(self) -> str:
        """``pending``, ``scheduled``, ``waiting``, ``running``, ``done``, ``failed`` or
        ``cancelled``; ``invalid`` if its file was quarantined (see ``jobq.records``).

        Raises:
            JobNotFound: if the spool has no such job (purged, or never enqueued).
        """
        return await anyio.to_thread.run_sync(admin.job_state, self._spool, self.id)

    async def cancel(self) -> bool:
        """Cancel the job: at once if it is waiting, at its next check if it is running.

        Returns:
            False if the job had already finished.

        Raises:
            JobNotFound: if the spool has no such job.
        """
        return await anyio.to_thread.run_sync(admin.cancel_job, self._spool, self.id)

    async def log(self) -> str:
        """The text the job logged so far ('' if nothing yet)."""
        try:
            return (await fileio.read_bytes(self._spool.log_path(self.id))).decode(
                "utf-8", errors="replace"
            )
        except FileNotFoundError:
            return ""

    async def info(self) -> dict[str, Any]:
        """The job as ``jobq status JOB_ID --json`` shows it."""
        return await anyio.to_thread.run_sync(self.info_sync)

    # -- the same, for sync code (Flask, Django, scripts) ------------------------------------

    def info_sync(self) -> dict[str, Any]:
        """``info()`` for sync code: the job as ``jobq status JOB_ID --json`` shows it.

        Raises:
            JobNotFound: if the spool has no such job.
        """
        from jobq import inspect

        return inspect.job_info(self._spool, self.id)

    def state_sync(self) -> str:
        """``state()`` for sync code.

        Raises:
            JobNotFound: if the spool has no such job (purged, or never enqueued).
        """
        return admin.job_state(self._spool, self.id)

    def cancel_sync(self) -> bool:
        """``cancel()`` for sync code; False if the job had already finished.

        Raises:
            JobNotFound: if the spool has no such job.
        """
        return admin.cancel_job(self._spool, self.id)

    def log_sync(self) -> str:
        """``log()`` for sync code: the text the job logged so far ('' if nothing yet)."""
        try:
            with open(self._spool.log_path(self.id), "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""


class _Gone:
    """When a waiting ``result()`` looks whether its job still exists, and what it concludes."""

    def __init__(self) -> None:
        self._next = time.monotonic() + GONE_LOOK_INTERVAL
        self._misses = 0

    def due(self) -> bool:
        """Whether it is time for a look."""
        return time.monotonic() >= self._next

    def left(self) -> float:
        """Seconds until the next look."""
        return max(0.0, self._next - time.monotonic())

    def looked(self, nowhere: bool) -> bool:
        """Count a look; True (gone) at the second miss in a row."""
        self._next = time.monotonic() + GONE_LOOK_INTERVAL
        self._misses = self._misses + 1 if nowhere else 0
        return self._misses >= 2
