"""Defining jobs: ``@jobq.job`` and ``jobq.Spool``, whose ``@spool.job`` sends its jobs there.

``@job`` checks every option when it decorates (a bad option is an error at import, not at
the first enqueue), registers the function under its name (``jobq.registry``) and returns its
``JobFunction`` (``jobq.api``).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypedDict, TypeVar, overload

import anyio

from jobq import admin
from jobq.api import JobFunction, JobOptions, check_priority
from jobq.config import spool_dir
from jobq.errors import ConfigurationError
from jobq.handle import JobHandle
from jobq.limits import RateLimit, check_max_running
from jobq.names import check_job_name, check_queue
from jobq.periodic import Schedule
from jobq.registry import JobSpec, register

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Coroutine

    from typing_extensions import Unpack

__all__ = ("DEFAULTS", "JobDecorator", "JobDecoratorOptions", "Spool", "job")

P = ParamSpec("P")
T = TypeVar("T")


def _check_options(
    queue: str, retries: int, retry_delay: float, timeout: float | None, priority: int
) -> None:
    check_queue(queue)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"retries must be an integer >= 0, got {retries!r}")
    if not isinstance(retry_delay, int | float) or retry_delay < 0:
        raise ConfigurationError(f"retry_delay must be seconds >= 0, got {retry_delay!r}")
    if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
        raise ConfigurationError(f"timeout must be seconds > 0 or None, got {timeout!r}")
    check_priority(priority)


class JobDecoratorOptions(TypedDict, total=False):
    """The options ``@job(...)`` and ``@spool.job(...)`` take besides ``name`` (see ``job``)."""

    queue: str
    retries: int
    retry_delay: float
    timeout: float | None
    priority: int
    cron: str | None
    every: float | None
    tz: str | None
    max_running: int | None
    rate_limit: str | None
    result_ttl: float | None


class JobDecorator(Protocol):
    """What ``@job(...)`` with options returns: a decorator for sync or async functions."""

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, T]], /
    ) -> JobFunction[P, Coroutine[Any, Any, T], T]: ...
    @overload
    def __call__(self, func: Callable[P, T], /) -> JobFunction[P, T, T]: ...


def _build_spec(func: Callable[..., Any], name: str | None, opts: dict[str, Any]) -> JobSpec:
    """Check the ``@job`` options of ``func`` and build its registry entry."""
    _check_options(opts["queue"], opts["retries"], opts["retry_delay"], opts["timeout"],
                   opts["priority"])  # fmt: skip
    schedule = Schedule.parse(opts["cron"], opts["every"], opts["tz"])
    job_name = name if name is not None else f"{func.__module__}.{func.__qualname__}"
    if name is None and "<" in job_name:
        raise ConfigurationError(
            f"{job_name!r} is not importable by a worker: define jobs at module level "
            "or pass name=..."
        )
    if schedule is not None and _required_parameters(func):
        raise ConfigurationError(
            f"periodic job {job_name!r} must take no arguments "
            f"(it has {', '.join(_required_parameters(func))})"
        )
    result_ttl = _check_ttl(opts["result_ttl"])
    timeout = opts["timeout"]
    return JobSpec(
        name=check_job_name(job_name),
        func=func,
        queue=opts["queue"],
        retries=opts["retries"],
        retry_delay=float(opts["retry_delay"]),
        timeout=None if timeout is None else float(timeout),
        priority=opts["priority"],
        schedule=schedule,
        max_running=check_max_running(opts["max_running"]),
        rate_limit=RateLimit.parse(opts["rate_limit"]),
        result_ttl=result_ttl,
    )


def _check_ttl(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ConfigurationError(f"result_ttl must be seconds >= 0 or None, got {value!r}")
    return float(value)


def _required_parameters(func: Callable[..., Any]) -> list[str]:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return []
    return [
        p.name
        for p in params
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _decorate(
    func: Callable[..., Any], spool: Spool | None, name: str | None, opts: dict[str, Any]
) -> JobFunction[Any, Any, Any]:
    if not callable(func):
        raise ConfigurationError(f"@job decorates functions, got {type(func).__name__}")
    spec = _build_spec(func, name, opts)
    register(spec)
    return JobFunction(func, spec, spool, JobOptions())


@overload
def job(
    func: Callable[P, Coroutine[Any, Any, T]], /
) -> JobFunction[P, Coroutine[Any, Any, T], T]: ...
@overload
def job(func: Callable[P, T], /) -> JobFunction[P, T, T]: ...
@overload
def job(
    *,
    name: str | None = None,
    **options: Unpack[JobDecoratorOptions],
) -> JobDecorator: ...
def job(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    **options: Any,
) -> Any:
    """Register a function as a job, bare (``@job``) or with options (``@job(queue=...)``).

    Args:
        name: the registered name; default ``module.qualname``.
        queue: the default queue.
        retries: extra attempts after a failure.
        retry_delay: base delay of the exponential backoff between attempts, in seconds.
        timeout: seconds an attempt may run (async jobs are cancelled; see docs/jobs.md).
        priority: higher runs first (-9999..9999).
        cron: run by itself on this 5-field cron schedule (a periodic job takes no
            arguments); see docs/jobs.md.
        every: run by itself every this many seconds (>= 1).
        tz: the IANA time zone of ``cron`` (default UTC).
        max_running: at most this many attempts run at once, across all workers and hosts.
        rate_limit: at most N starts per second, minute or hour: ``"N/s"``, ``"N/m"``,
            ``"N/h"``, across all workers and hosts.
        result_ttl: seconds a ``done`` record (with its log) is kept; default: the worker's
            ``--result-ttl``, else until ``jobq purge``.

    Raises:
        ConfigurationError: if an option is invalid or the name is taken by another function.
        InvalidName: if the name or queue is not a safe identifier.
    """
    return _job_decorator(None, func, name, options)


#: Every ``@job`` option and its default.
DEFAULTS: dict[str, Any] = {
    "queue": "default",
    "retries": 0,
    "retry_delay": 1.0,
    "timeout": None,
    "priority": 0,
    "cron": None,
    "every": None,
    "tz": None,
    "max_running": None,
    "rate_limit": None,
    "result_ttl": None,
}


def _job_decorator(
    spool: Spool | None, func: Callable[..., Any] | None, name: str | None, given: dict[str, Any]
) -> Any:
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"@job() got unexpected option(s): {', '.join(unknown)}")
    opts = {**DEFAULTS, **given}
    if func is not None:
        return _decorate(func, spool, name, opts)
    _check_options(opts["queue"], opts["retries"], opts["retry_delay"], opts["timeout"],
                   opts["priority"])  # fmt: skip
    Schedule.parse(opts["cron"], opts["every"], opts["tz"])
    RateLimit.parse(opts["rate_limit"])
    check_max_running(opts["max_running"])
    _check_ttl(opts["result_ttl"])

    def decorator(f: Callable[..., Any]) -> JobFunction[Any, Any, Any]:
        return _decorate(f, spool, name, opts)

    return decorator


class Spool:
    """An explicit spool directory, for apps that use more than one or do not want globals.

    Args:
        path: the spool directory (created mode 0700 on first use); default: the configured
            spool, ``$JOBQ_SPOOL`` or ``./jobq-spool``.
        durable: fsync job files and outcomes so they survive power loss (default True, or
            ``$JOBQ_DURABLE``).
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, *, durable: bool | None = None):
        self.dir = spool_dir(path, durable)

    @property
    def path(self) -> str:
        """The spool's absolute path."""
        return self.dir.root

    def __repr__(self) -> str:
        return f"Spool({self.path!r}, durable={self.dir.durable})"

    @overload
    def job(
        self, func: Callable[P, Coroutine[Any, Any, T]], /
    ) -> JobFunction[P, Coroutine[Any, Any, T], T]: ...
    @overload
    def job(self, func: Callable[P, T], /) -> JobFunction[P, T, T]: ...
    @overload
    def job(
        self,
        /,
        *,
        name: str | None = None,
        **options: Unpack[JobDecoratorOptions],
    ) -> JobDecorator: ...
    def job(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        **options: Any,
    ) -> Any:
        """``@jobq.job`` whose jobs go to this spool; same arguments and errors."""
        return _job_decorator(self, func, name, options)

    def get(self, job_id: str) -> JobHandle[Any]:
        """A handle to an existing job.

        Raises:
            JobNotFound: if the spool has no such job.
        """
        queue = admin.job_queue(self.dir, job_id)
        return JobHandle(self.dir, job_id, queue)

    async def stats(self) -> dict[str, Any]:
        """Counts per queue and live workers, as ``jobq status --json`` prints them."""
        from jobq import inspect

        return await anyio.to_thread.run_sync(inspect.spool_stats, self.dir)
