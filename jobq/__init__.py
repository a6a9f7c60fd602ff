"""jobq: a background job queue for async Python whose queue is a directory.

Producers write job files into a spool directory; workers claim them by atomic rename, run
them on asyncio or trio, and write results and logs back. See README.md and docs/.

The names below are imported on first use (PEP 562), so that ``jobq worker --processes N``
and other commands start their work without first importing the whole package.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobq.api import JobFunction, JobOptions, call
    from jobq.config import configure
    from jobq.context import JobContext, current_job
    from jobq.decorator import Spool, job
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

#: The module that defines each public name.
_HOMES = {
    **dict.fromkeys(("JobFunction", "JobOptions", "call"), "jobq.api"),
    **dict.fromkeys(("Spool", "job"), "jobq.decorator"),
    "configure": "jobq.config",
    **dict.fromkeys(("JobContext", "current_job"), "jobq.context"),
    **dict.fromkeys(
        (
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
        ),
        "jobq.errors",
    ),
    "JobHandle": "jobq.handle",
    **dict.fromkeys(("JobEvent", "on_failure", "on_retry", "on_start", "on_success"), "jobq.hooks"),
    "Worker": "jobq.worker",
}


if not TYPE_CHECKING:  # for mypy, the imports above: a misspelt name stays an error

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is not None:
            value = getattr(importlib.import_module(home), name)
        else:  # a submodule, such as jobq.errors, as after an eager import of the package
            try:
                value = importlib.import_module(f"jobq.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"jobq.{name}":
                    raise
                raise AttributeError(f"module 'jobq' has no attribute {name!r}") from None
        globals()[name] = value  # the next lookup is a plain global
        return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
