"""Errors raised by jobq.

Every error derives from one base, so ``except jobq.JobqError`` catches them all::

    JobqError
    ├── ConfigurationError   bad @job options or settings, raised at decoration/start
    ├── InvalidName          queue or job name that is not a safe identifier
    ├── JobNotFound          no job with that id in the spool (also a LookupError)
    ├── SerializationError   arguments or a result that JSON cannot carry
    ├── SpoolError           an OSError from the filesystem, translated at the spool boundary
    ├── JobFailed            raised by JobHandle.result() when the job ended in ``failed``
    ├── JobCancelled         raised by JobHandle.result() when the job was cancelled
    │   └── DependencyFailed a job of its after= list ended failed or cancelled
    └── Retry(delay)         raised by job code to ask for another attempt

``Retry`` is not a failure: a worker that catches it schedules the job again.
"""

from __future__ import annotations

__all__ = (
    "ConfigurationError",
    "DependencyFailed",
    "InvalidName",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "JobqError",
    "Retry",
    "SerializationError",
    "SpoolError",
)


class JobqError(Exception):
    """Base class of every error jobq raises."""


class ConfigurationError(JobqError):
    """Raised when ``@job`` options, worker settings or the environment are invalid.

    Raised at decoration or start-up time, never while a job runs.
    """


class InvalidName(JobqError, ValueError):
    """Raised when a queue name, job name or job id is not a safe identifier.

    Names become file and directory names inside the spool, so path separators, ``..``,
    control characters and overlong names are refused before they touch the filesystem.
    """


class JobNotFound(JobqError, LookupError):
    """Raised when no job with the given id exists in the spool.

    Unlike ``JobFailed`` this says nothing about the job's outcome: the id is unknown, or its
    record was purged.
    """


class SerializationError(JobqError, TypeError):
    """Raised when arguments or a result cannot be encoded as JSON.

    jobq never pickles: job files are JSON so that any language can read and write them.
    """


class SpoolError(JobqError, OSError):
    """Raised when the filesystem refuses an operation on the spool (ENOSPC, EACCES, ...).

    The original ``OSError`` is chained as ``__cause__``; nothing is left half published.
    """


class JobFailed(JobqError):
    """Raised by ``JobHandle.result()`` when the job ended in the ``failed`` state.

    Attributes:
        job_id: the failed job's id.
        error_type: the qualified name of the exception the job raised.
        error_message: ``str()`` of that exception.
        traceback: the formatted traceback text captured in the worker.
    """

    def __init__(self, job_id: str, error_type: str, error_message: str, traceback: str) -> None:
        super().__init__(
            f"job {job_id} failed with {error_type}: {error_message}"
            " (see `jobq status JOB_ID` for the traceback)"
        )
        self.job_id = job_id
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class JobCancelled(JobqError):
    """Raised by ``JobHandle.result()`` when the job was cancelled before it finished.

    Unlike ``JobFailed`` the job's code did not fail: somebody ran ``jobq cancel`` or
    ``JobHandle.cancel()``.
    """

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class DependencyFailed(JobCancelled):
    """Raised by ``JobHandle.result()`` when a job was cancelled because a dependency failed.

    A job enqueued with ``options(after=[...])`` is cancelled, never run, when one of those
    jobs ends ``failed`` or ``cancelled``; its dependents are cancelled the same way in turn.

    Attributes:
        dependency: the id of the dependency that did not end ``done`` (None if unknown).
    """

    def __init__(self, job_id: str, message: str = "", dependency: str | None = None) -> None:
        JobqError.__init__(self, message or f"job {job_id} was cancelled: a dependency failed")
        self.job_id = job_id
        self.dependency = dependency


class Retry(JobqError):
    """Raised by job code to ask for another attempt after ``delay`` seconds.

    The attempt still counts: a job that keeps raising ``Retry`` ends in ``failed`` once its
    ``retries`` are used up. ``delay=None`` uses the job's backoff (``retry_delay * 2**n``).
    """

    def __init__(self, delay: float | None = None) -> None:
        super().__init__("retry requested" if delay is None else f"retry requested in {delay:g} s")
        self.delay = delay
