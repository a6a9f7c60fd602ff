"""What a running job can learn about itself: ``jobq.current_job()``.

Log records emitted while a job runs (through ``current_job().log`` or the standard ``logging``
module) are captured into that job's log by a context variable, so concurrent jobs never mix
their lines even when sync jobs run in threads.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jobq.errors import JobqError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ("JOB_LOG_ONLY", "CaptureHandler", "JobContext", "current_job", "current_job_or_none")

_CURRENT: ContextVar[JobContext | None] = ContextVar("jobq_current_job", default=None)
_JOB_LOGGER = "jobq.job"
logging.getLogger(_JOB_LOGGER).setLevel(logging.DEBUG)
_WORKER_LOGGER = "jobq.worker"

#: A log record with this attribute true goes to its job's log file only, never to the
#: worker's stderr (``jobq.logs``): jobq's own notes about an attempt, such as its progress or
#: a retried failure's traceback, would break the one line per finished attempt there.
JOB_LOG_ONLY = "jobq_job_log_only"


@dataclass(eq=False)
class JobContext:
    """The running job, as seen from inside it.

    Attributes:
        id: the job's id (stable across attempts: use it as an idempotency key).
        name: the registered job name.
        queue: the queue it came from.
        attempt: 1 for the first start, 2 for the second, ...
        log: a logger whose records go to this job's log file (``jobq logs JOB_ID``) and to
            the worker's stderr; also ``logger``. ``note`` writes to the job's log only.
    """

    id: str
    name: str
    queue: str
    attempt: int
    log: logging.Logger
    _progress_sink: Callable[[JobContext], Awaitable[None]] | None = field(default=None, repr=False)
    lines: list[str] = field(default_factory=list, repr=False)
    progress_state: dict[str, object] | None = field(default=None, repr=False)

    async def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        """Report progress; it shows in ``jobq status JOB_ID`` and the job's log."""
        self.progress_state = {"done": done, "total": total, "message": message, "at": time.time()}
        shown = f"{done:g}" if total is None else f"{done:g}/{total:g}"
        self.note(logging.INFO, "progress %s %s", shown, message)
        if self._progress_sink is not None:
            await self._progress_sink(self)

    @property
    def logger(self) -> logging.Logger:
        """The same logger as ``log`` (under the name other libraries give it)."""
        return self.log

    def note(self, level: int, message: str, *args: object) -> None:
        """Log ``message % args`` to this job's log file only (``JOB_LOG_ONLY``)."""
        self.log.log(level, message, *args, extra={JOB_LOG_ONLY: True})

    def activate(self) -> Token[JobContext | None]:
        """Make this the current job in this context; returns a token for ``deactivate``."""
        return _CURRENT.set(self)

    @staticmethod
    def deactivate(token: Token[JobContext | None]) -> None:
        """Undo ``activate``."""
        _CURRENT.reset(token)


def local_context(name: str, queue: str) -> JobContext:
    """The context a plain in-process call of a job sees: ``current_job()`` works there too.

    Its id is ``local``, its attempt 1, and its log goes to the ``jobq.job.NAME`` logger only.
    """
    return new_context("local", name, queue, 1)


def new_context(
    job_id: str,
    name: str,
    queue: str,
    attempt: int,
    progress_sink: Callable[[JobContext], Awaitable[None]] | None = None,
) -> JobContext:
    """A context for one attempt of one job."""
    log = logging.getLogger(f"{_JOB_LOGGER}.{name}")
    return JobContext(job_id, name, queue, attempt, log, progress_sink)


def current_job() -> JobContext:
    """The job running in this task or thread.

    Raises:
        JobqError: when called outside a job run by a jobq worker.
    """
    ctx = _CURRENT.get()
    if ctx is None:
        raise JobqError("current_job() is only available inside a job run by a jobq worker")
    return ctx


def current_job_or_none() -> JobContext | None:
    """The job running in this task or thread, or None outside a job."""
    return _CURRENT.get()


class CaptureHandler(logging.Handler):
    """A logging handler that appends each record to the log of the job that emitted it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Buffer the formatted record in the current job's context (outside jobs: ignore)."""
        ctx = _CURRENT.get()
        # The worker's own line about the job (done, failed, retrying) is logged from the
        # job's context after its log was flushed: it belongs to the worker's log only.
        if ctx is None or record.name == _WORKER_LOGGER:
            return
        try:
            ctx.lines.append(self.format(record) + "\n")
        except Exception:
            self.handleError(record)
