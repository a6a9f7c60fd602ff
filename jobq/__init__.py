"""jobq: a background job queue for async Python whose queue is a directory.

Producers write job files into a spool directory; workers claim them by atomic rename, run
them on asyncio or trio, and write results and logs back. See README.md and docs/.
"""

from jobq.api import JobFunction, JobOptions, Spool, call, job
from jobq.config import configure
from jobq.context import JobContext, current_job
from jobq.errors import (
    ConfigurationError,
    DependencyFailed,
    InvalidName,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobqError,
    Retry,
    SerializationError,
    SpoolError,
)
from jobq.handle import JobHandle
from jobq.hooks import JobEvent, on_failure, on_retry, on_start, on_success
from jobq.worker import Worker

__all__ = (
    "ConfigurationError",
    "DependencyFailed",
    "InvalidName",
    "JobCancelled",
    "JobContext",
    "JobEvent",
    "JobFailed",
    "JobFunction",
    "JobHandle",
    "JobNotFound",
    "JobOptions",
    "JobqError",
    "Retry",
    "SerializationError",
    "Spool",
    "SpoolError",
    "Worker",
    "call",
    "configure",
    "current_job",
    "job",
    "on_failure",
    "on_retry",
    "on_start",
    "on_success",
)

__version__ = "0.1.0"
