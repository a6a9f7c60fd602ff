"""What a worker tells about each attempt: one log line on ``jobq.worker``, and the hooks.

The worker and ``jobq.settle`` call a ``Reporter`` at a few named points (an attempt started,
an outcome was recorded, a retry was scheduled, an attempt was fenced, requeued or lost, a
file was quarantined); each point logs one line naming the job by name and id and fires the
matching hooks (``jobq.hooks``). Levels: done and cancelled at INFO, retries, fenced attempts
and quarantined files at WARNING, final failures at ERROR, so a service's journal shows what
happened at the default level. With ``--log-format json`` each line also carries the job's
fields (``event``, ``job_id``, ``job_name``, ``queue``, ``attempt``, ``max_attempts``,
``duration``, ``delay``, ``error_type``, ``error_message``, ``path``, ``reason``, ``worker``).

Failure story: reporting happens after the spool records what happened (or, for a start,
beside the attempt); it writes nothing to the spool, so a crash here loses a log line or a
hook call, never a job.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from jobq.hooks import HookRunner, JobEvent
from jobq.logs import job_fields

if TYPE_CHECKING:
    from collections.abc import Callable

    from jobq.model import Outcome
    from jobq.settle import Attempt

__all__ = ("Reporter",)

logger = logging.getLogger("jobq.worker")

#: Longest error message quoted in a log line (the record keeps it whole).
MESSAGE_CHARS = 300


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= MESSAGE_CHARS else line[: MESSAGE_CHARS - 1] + "…"


def _error_fields(error: dict[str, str] | None) -> dict[str, str | None]:
    """The JSON log fields of an error (none without one)."""
    if not error:
        return {}
    return {"error_type": error.get("type"), "error_message": error.get("message")}


def _log(level: int, msg: str, *args: object, fields: dict[str, Any]) -> None:
    """``logger.log(level, msg, *args, extra=fields)`` without looking up the caller.

    Every line of ``Reporter`` would name this module as its source anyway, and the lookup
    (a walk up the stack) is a tenth of what the line per finished job costs. The records
    carry this file as ``pathname``, line 0 and no ``funcName``.
    """
    if logger.isEnabledFor(level):
        logger.handle(logger.makeRecord(logger.name, level, __file__, 0, msg, args, None,
                                        extra=fields))  # fmt: skip


def _error_text(error: dict[str, str] | None) -> str:
    if not error:
        return "unknown error"
    message = _one_line(error.get("message", ""))
    return f"{error.get('type', 'Error')}: {message}" if message else str(error.get("type"))


class Reporter:
    """Logs one line per finished attempt and fires the hooks, for one worker.

    Args:
        spool: the spool's path (hooks see it as ``event.spool``).
        worker_id: returns the worker's current id.
    """

    def __init__(self, spool: str, worker_id: Callable[[], str]) -> None:
        self.spool = spool
        self._worker_id = worker_id
        self.hooks = HookRunner()

    # -- the named points ------------------------------------------------------------------

    def started(self, run: Attempt) -> None:
        """An attempt is about to run: fire ``on_start`` (no log line: the outcome has one)."""
        if self.hooks.wanted("start"):
            self.hooks.fire(self._event("start", run))

    def recorded(self, run: Attempt, outcome: Outcome) -> None:
        """The outcome record of ``run`` is committed: log it, fire success or failure hooks."""
        duration = max(0.0, outcome.finished_at - run.started_at)
        job = run.job
        fields = self._fields(
            run, outcome.state, duration=round(duration, 6), **_error_fields(outcome.error)
        )
        if outcome.state == "done":
            _log(logging.INFO, "job %s[%s] done in %.3f s", job.name, job.id, duration,
                 fields=fields)  # fmt: skip
            kind = "success"
        elif outcome.state == "failed":
            _log(
                logging.ERROR, "job %s[%s] failed: %s (attempt %d of %d)",
                job.name, job.id, _error_text(outcome.error), run.claimed.name.attempts,
                _max_attempts(run), fields=fields,
            )  # fmt: skip
            kind = "failure"
        else:  # cancelled: an attempt ends so only when a cancel was asked for
            _log(logging.INFO, "job %s[%s] %s after %.3f s: cancel requested", job.name, job.id,
                 outcome.state, duration, fields=fields)  # fmt: skip
            return
        if self.hooks.wanted(kind):
            self.hooks.fire(
                self._event(
                    kind, run, duration=duration, result=outcome.result, error=outcome.error
                )
            )

    def retrying(self, run: Attempt, delay: float, error: dict[str, str] | None) -> None:
        """A retry of ``run``'s job is scheduled in ``delay`` seconds: log it, fire on_retry."""
        job, attempt = run.job, run.claimed.name.attempts
        duration = max(0.0, time.time() - run.started_at)
        fields = self._fields(
            run, "retry", delay=round(delay, 6), duration=round(duration, 6), **_error_fields(error)
        )
        if error is not None:
            what = f"failed: {_error_text(error)}"
        else:
            what = "asked for a retry (jobq.Retry)"
        logger.warning(
            "job %s[%s] attempt %d of %d %s; retry in %.2f s",
            job.name, job.id, attempt, _max_attempts(run), what, delay, extra=fields,
        )  # fmt: skip
        if self.hooks.wanted("retry"):
            self.hooks.fire(
                self._event("retry", run, duration=duration, error=error, retry_delay=delay)
            )

    def fenced(self, run: Attempt) -> None:
        """Another attempt owns the job now: this attempt's outcome was discarded."""
        logger.warning(
            "job %s[%s]: outcome discarded, another attempt owns the job now "
            "(this worker's lease expired)",
            run.job.name, run.job.id, extra=self._fields(run, "fenced"),
        )  # fmt: skip

    def requeued(self, run: Attempt) -> None:
        """Shutdown: the job was still running after the grace period and went back."""
        logger.warning(
            "job %s[%s] still running after the grace period: requeued",
            run.job.name, run.job.id, extra=self._fields(run, "requeued"),
        )  # fmt: skip

    def lost(self, run: Attempt) -> None:
        """The worker lost its lease: the attempt was stopped; the reaper owns the job."""
        logger.warning(
            "job %s[%s] stopped: this worker lost its lease, the job runs again by lease",
            run.job.name, run.job.id, extra=self._fields(run, "lost"),
        )  # fmt: skip

    def unrecorded(self, run: Attempt, exc: OSError, delay: float) -> None:
        """Not even a failure record could be written: the job waits ``delay`` s to run again."""
        logger.error(
            "job %s[%s]: no outcome recorded (%s); it runs again in %g s",
            run.job.name, run.job.id, exc, delay, extra=self._fields(run, "unrecorded"),
        )  # fmt: skip

    def quarantined(self, path: str | None, reason: str) -> None:
        """A bad job file was moved to ``invalid/`` (``path`` None: it was already gone)."""
        if path is None:
            return
        logger.warning(
            "quarantined %s: %s",
            path, _one_line(reason),
            extra=job_fields(event="quarantined", path=path, reason=reason,
                             worker=self._worker_id()),
        )  # fmt: skip

    # -- helpers -----------------------------------------------------------------------------

    def _fields(self, run: Attempt, event: str, **more: Any) -> dict[str, dict[str, Any]]:
        return job_fields(
            event=event,
            job_id=run.job.id,
            job_name=run.job.name,
            queue=run.job.queue,
            attempt=run.claimed.name.attempts,
            max_attempts=_max_attempts(run),
            worker=self._worker_id(),
            **more,
        )

    def _event(self, kind: str, run: Attempt, **more: Any) -> JobEvent:
        job = run.job
        return JobEvent(
            kind=kind,
            id=job.id,
            name=job.name,
            queue=job.queue,
            attempt=run.claimed.name.attempts,
            max_attempts=_max_attempts(run),
            args=job.args,
            kwargs=job.kwargs,
            worker=self._worker_id(),
            spool=self.spool,
            **more,
        )


def _max_attempts(run: Attempt) -> int:
    return run.job.attempts_base + run.job.retries + 1
