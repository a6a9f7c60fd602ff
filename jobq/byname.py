"""Enqueue a job by its registered name, as ``jobq enqueue NAME`` does from a shell.

A job's name is usually ``module.function``. The longest dotted prefix of the name that is a
module is imported (the current directory first on ``sys.path``, as ``jobq worker APP`` does),
so that the job's ``@job`` options apply: its queue, priority, retries, retry delay and timeout,
unless the command line says otherwise. A name no importable module registers (a custom
``name=``, an app not on the path) is enqueued with the defaults and the options given; a
module that exists but raised while importing does not stop the enqueue either, and the
caller is told why the options did not apply.

The job itself goes through ``JobFunction.enqueue_sync``, the API's own path: same checks,
same file, same durability.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from jobq.api import JobFunction, JobOptions
from jobq.decorator import DEFAULTS
from jobq.errors import ConfigurationError
from jobq.names import check_job_name
from jobq.registry import JobSpec, import_apps, lookup

if TYPE_CHECKING:
    from collections.abc import Iterator

    from jobq.decorator import Spool
    from jobq.handle import JobHandle

__all__ = ("enqueue_by_name", "registered_spec")


def registered_spec(name: str) -> tuple[JobSpec | None, str | None]:
    """The job registered as ``name``, importing its module if need be; and a note (or None)
    saying why the options could not be found: the module raised while importing, or it
    imported but registers no such job (a typo, or a custom ``name=``)."""
    spec = lookup(name)
    if spec is not None:
        return spec, None
    parts = name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:end])
        try:
            with _stdout_to_stderr():
                import_apps([module])
        except ConfigurationError as exc:
            if _no_such_module(exc.__cause__, module):
                continue  # maybe a shorter prefix is the module (``pkg.tasks.Class.method``)
            return None, str(exc)
        spec = lookup(name)
        return spec, None if spec is not None else f"module {module!r} registers no job {name!r}"
    return None, None


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send what is written to stdout meanwhile to stderr, down to the file descriptor (an app
    may print, or run a program, while it imports): stdout carries the job id alone."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _no_such_module(cause: BaseException | None, module: str) -> bool:
    # A module that imports something missing itself is a broken module, not a missing one.
    if not isinstance(cause, ModuleNotFoundError) or cause.name is None:
        return False
    return module == cause.name or module.startswith(cause.name + ".")


def enqueue_by_name(
    spool: Spool,
    name: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    queue: str | None = None,
    delay: float = 0.0,
    priority: int | None = None,
    retries: int | None = None,
) -> tuple[JobHandle[Any], str | None]:
    """Enqueue ``name(*args, **kwargs)`` with its registered options, overridden by those given.

    Returns:
        The job's handle, and a note (or None) when the job's module did not import.

    Raises:
        InvalidName: if ``name`` or ``queue`` is not a valid name.
        ConfigurationError: if an option is out of range.
        SerializationError: if an argument is not a JSON value.
        SpoolError: if the spool's filesystem refuses the write.
    """
    # What the command line gives is checked before any app code runs.
    check_job_name(name)
    unregistered = JobSpec(
        name=name, func=_unregistered, queue=DEFAULTS["queue"], retries=DEFAULTS["retries"],
        retry_delay=DEFAULTS["retry_delay"], timeout=DEFAULTS["timeout"],
        priority=DEFAULTS["priority"],
    )  # fmt: skip
    JobFunction(_unregistered, unregistered, spool, JobOptions()).options(
        queue=queue, priority=priority, delay=delay or None
    )
    spec, note = registered_spec(name)
    spec = spec or unregistered
    if retries is not None:
        spec = replace(spec, retries=retries)
    function: JobFunction[..., Any, Any] = JobFunction(spec.func, spec, spool, JobOptions())
    chosen = function.options(queue=queue, priority=priority, delay=delay or None)
    return chosen.enqueue_sync(*args, **kwargs), note


def _unregistered(*args: Any, **kwargs: Any) -> None:
    """Stands in for a function this process does not know; a worker that knows it runs it."""
