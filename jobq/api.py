"""The producer side: ``@job``, job options, enqueueing, and ``jobq.Spool``."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

import anyio

from jobq import admin, dependencies
from jobq.config import spool_dir
from jobq.context import JobContext, current_job_or_none, local_context
from jobq.errors import ConfigurationError, SerializationError
from jobq.gathering import gathering_for
from jobq.handle import JobHandle
from jobq.inline import gate_for
from jobq.keys import holder_queue
from jobq.layout import MAX_PRIORITY, MIN_PRIORITY
from jobq.limits import RateLimit, check_max_running
from jobq.model import Job, new_job_id
from jobq.names import check_job_id, check_job_name, check_queue
from jobq.periodic import Schedule
from jobq.registry import JobSpec, register

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Coroutine, Iterable

    from jobq.spool import SpoolDir

__all__ = ("JobFunction", "JobOptions", "Spool", "job", "spool_dir")

P = ParamSpec("P")
R = TypeVar("R")
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
    _check_priority(priority)


def _check_priority(priority: int) -> None:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ConfigurationError(f"priority must be an integer, got {priority!r}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ConfigurationError(f"priority {priority} out of range {MIN_PRIORITY}..{MAX_PRIORITY}")


@dataclass(frozen=True, slots=True)
class JobOptions:
    """Per-enqueue options (see ``JobFunction.options``).

    Attributes:
        delay: seconds to wait before the job may run.
        priority: overrides the job's default priority.
        key: deduplication key: while a job enqueued with this key has a record in the
            spool, enqueueing the same key again returns that job instead of a new one.
        queue: overrides the job's default queue.
        after: ids of jobs that must be ``done`` before this one runs.
    """

    delay: float = 0.0
    priority: int | None = None
    key: str | None = None
    queue: str | None = None
    after: tuple[str, ...] = ()


def _key_id(key: str) -> str:
    return "k" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


class JobFunction(Generic[P, R, T]):
    """A function registered with ``@job``: call it to run in-process, enqueue it to defer.

    ``R`` is what a plain call returns (a coroutine for ``async def``), ``T`` what the job's
    result is once awaited.
    """

    def __init__(
        self, func: Callable[P, R], spec: JobSpec, spool: Spool | None, opts: JobOptions
    ) -> None:
        self.func = func
        self.spec = spec
        self._spool = spool
        self._opts = opts
        self.__name__ = getattr(func, "__name__", spec.name)
        self.__qualname__ = getattr(func, "__qualname__", spec.name)
        self.__doc__ = func.__doc__
        self.__module__ = func.__module__
        self.__wrapped__ = func

    @property
    def name(self) -> str:
        """The registered name that job files carry."""
        return self.spec.name

    def __repr__(self) -> str:
        return f"<jobq job {self.spec.name!r} queue={self.spec.queue!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function in-process, as if it were not a job.

        Outside a worker, ``jobq.current_job()`` inside the call gives a local stand-in (id
        ``local``, attempt 1) so that job code runs unchanged in scripts and tests.
        """
        if current_job_or_none() is not None:
            return self.func(*args, **kwargs)
        ctx = local_context(self.spec.name, self._opts.queue or self.spec.queue)
        if self.spec.is_async:
            return cast("R", _awaited_in(ctx, self.func(*args, **kwargs)))
        token = ctx.activate()
        try:
            return self.func(*args, **kwargs)
        finally:
            ctx.deactivate(token)

    def options(
        self,
        *,
        delay: float | None = None,
        priority: int | None = None,
        key: str | None = None,
        queue: str | None = None,
        after: Iterable[JobHandle[Any] | str] | None = None,
    ) -> JobFunction[P, R, T]:
        """The same job with per-enqueue options.

        Args:
            delay: seconds to wait before the job may run.
            priority: overrides the job's default priority.
            key: deduplication key (see ``JobOptions``).
            queue: overrides the job's default queue.
            after: handles or ids of jobs that must all end ``done`` first; the job waits in
                state ``waiting`` meanwhile, and is cancelled with ``jobq.DependencyFailed``
                if one of them ends ``failed`` or ``cancelled``.

        Raises:
            ConfigurationError: if an option is out of range, or ``after`` is combined with
                ``delay``.
            InvalidName: if ``queue`` or an ``after`` id is not valid.
        """
        opts = self._opts
        if delay is not None:
            if not isinstance(delay, int | float) or delay < 0:
                raise ConfigurationError(f"delay must be seconds >= 0, got {delay!r}")
            opts = replace(opts, delay=float(delay))
        if priority is not None:
            _check_priority(priority)
            opts = replace(opts, priority=priority)
        if key is not None:
            if not isinstance(key, str) or not key:
                raise ConfigurationError("key must be a non-empty string")
            opts = replace(opts, key=key)
        if queue is not None:
            opts = replace(opts, queue=check_queue(queue))
        if after is not None:
            if isinstance(after, str | JobHandle):
                raise ConfigurationError("after= takes a list of handles or job ids")
            ids = tuple(dict.fromkeys(check_job_id(getattr(a, "id", a)) for a in after))
            opts = replace(opts, after=ids)
        if opts.after and opts.delay > 0:
            raise ConfigurationError("a job with after= runs when its dependencies are done: "
                                     "it takes no delay=")  # fmt: skip
        return JobFunction(self.func, self.spec, self._spool, opts)

    def _spool_dir(self) -> SpoolDir:
        return self._spool.dir if self._spool is not None else spool_dir()

    def _build(self, args: tuple[Any, ...], kwargs: dict[str, Any], now: float) -> Job:
        opts = self._opts
        job_id = new_job_id() if opts.key is None else _key_id(opts.key)
        return Job(
            id=job_id,
            name=self.spec.name,
            queue=opts.queue or self.spec.queue,
            args=list(args),
            kwargs=dict(kwargs),
            priority=self.spec.priority if opts.priority is None else opts.priority,
            retries=self.spec.retries,
            retry_delay=self.spec.retry_delay,
            timeout=self.spec.timeout,
            enqueued_at=now,
            key=opts.key,
            after=opts.after,
        )

    def _publish(
        self,
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]],
        spool: SpoolDir | None = None,
    ) -> list[JobHandle[T]]:
        spool = spool or self._spool_dir()
        now = time.time()
        # A microsecond apart: the pending name sorts by enqueue time, so a batch keeps its
        # order (FIFO within a priority) instead of tying and falling back on random ids.
        first_us = round(now * 1_000_000)
        jobs = [self._build(a, kw, (first_us + i) / 1_000_000) for i, (a, kw) in enumerate(calls)]
        due = None if self._opts.delay <= 0 else round((now + self._opts.delay) * 1_000_000)
        if self._opts.after:
            for dep in self._opts.after:
                admin.locate(spool, dep)  # raises JobNotFound for an unknown id
            dependencies.link(spool, [(j, j.file_name.filename) for j in jobs])
        published = spool.publish(jobs, due)
        if self._opts.after:
            dependencies.check_new(
                spool,
                [(j, j.file_name.filename) for j, ok in zip(jobs, published, strict=True) if ok],
            )
        return [
            JobHandle(spool, j.id, j.queue if ok else holder_queue(spool, j, due)[0])
            for j, ok in zip(jobs, published, strict=True)
        ]

    async def enqueue(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[T]:
        """Enqueue one run of the job; returns once the job file is durable.

        A non-durable enqueue on a local disk runs on the event loop's thread, where it is
        cheaper than the hop to a worker thread; it never stalls the loop for more than about
        a millisecond (``jobq.inline``). Durable enqueues made at the same time on one event
        loop share their syncs (``jobq.gathering``).

        Raises:
            SerializationError: if an argument is not a JSON value.
            SpoolError: if the spool's filesystem refuses the write.
        """
        call: tuple[tuple[Any, ...], dict[str, Any]] = (tuple(args), dict(kwargs))
        spool = self._spool_dir()
        queue = self._opts.queue or self.spec.queue
        # after= reads every dependency first, and a queue's first job creates its directories:
        # both always worth a thread.
        if self._opts.after or not spool.queue_ready(queue):
            handles = await anyio.to_thread.run_sync(self._publish, [call], spool)
        elif spool.durable and self._opts.delay <= 0:
            # Its syncs shared with the enqueues of the same moment (``jobq.gathering``).
            job = self._build(call[0], call[1], time.time())
            if await gathering_for(spool).publish(job):
                return JobHandle(spool, job.id, job.queue)
            holder, _ = await anyio.to_thread.run_sync(holder_queue, spool, job, None)
            return JobHandle(spool, job.id, holder)
        else:
            gate = gate_for(spool.root, spool.durable)
            handles = await gate.call(lambda: self._publish([call], spool))
        return handles[0]

    def enqueue_sync(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[T]:
        """``enqueue`` for sync code (scripts, Flask, Django); same errors.

        Raises:
            ConfigurationError: when called from a running event loop's thread.
        """
        if _in_event_loop_thread():
            raise ConfigurationError("enqueue_sync() blocks: use `await job.enqueue()` here")
        return self._publish([(args, kwargs)])[0]

    async def enqueue_many(
        self, calls: Iterable[tuple[Any, ...] | tuple[tuple[Any, ...], dict[str, Any]]]
    ) -> list[JobHandle[T]]:
        """Enqueue a batch with one group commit: one fsync per directory, not per job.

        Args:
            calls: one tuple of positional arguments per job, e.g. ``[(1, 2), (3, 4)]``;
                to pass keyword arguments too, give ``(args_tuple, kwargs_dict)`` pairs via
                ``jobq.call(*args, **kwargs)``.

        Raises:
            SerializationError: if an argument is not JSON (nothing is enqueued).
            SpoolError: if the filesystem refuses (nothing is enqueued).
        """
        normalised = [_as_call(c) for c in calls]
        if self._opts.key is not None and len(normalised) > 1:
            raise ConfigurationError("a deduplication key names one job: enqueue it alone")
        return await anyio.to_thread.run_sync(self._publish, normalised)


async def _awaited_in(ctx: JobContext, coro: Any) -> Any:
    token = ctx.activate()
    try:
        return await coro
    finally:
        ctx.deactivate(token)


def _in_event_loop_thread() -> bool:
    """Whether this thread runs an asyncio or trio event loop (where blocking is a bug)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return True
    trio = sys.modules.get("trio")  # not imported: certainly not running
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class Call(tuple[tuple[Any, ...], dict[str, Any]]):
    """Positional and keyword arguments for one job of ``enqueue_many`` (see ``jobq.call``)."""

    __slots__ = ()


def call(*args: Any, **kwargs: Any) -> Call:
    """Bundle arguments for one job of ``enqueue_many``: ``add.enqueue_many([call(1, y=2)])``."""
    return Call((args, kwargs))


def _as_call(item: object) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if isinstance(item, Call):
        return item[0], item[1]
    if isinstance(item, tuple):
        return item, {}
    if isinstance(item, list):
        return tuple(item), {}
    raise SerializationError(
        f"enqueue_many takes tuples of positional arguments, got {type(item).__name__}"
    )


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
    queue: str = "default",
    retries: int = 0,
    retry_delay: float = 1.0,
    timeout: float | None = None,
    priority: int = 0,
    cron: str | None = None,
    every: float | None = None,
    tz: str | None = None,
    max_running: int | None = None,
    rate_limit: str | None = None,
    result_ttl: float | None = None,
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


_DEFAULTS: dict[str, Any] = {
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
    unknown = sorted(set(given) - set(_DEFAULTS))
    if unknown:
        raise TypeError(f"@job() got unexpected option(s): {', '.join(unknown)}")
    opts = {**_DEFAULTS, **given}
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
        queue: str = "default",
        retries: int = 0,
        retry_delay: float = 1.0,
        timeout: float | None = None,
        priority: int = 0,
        cron: str | None = None,
        every: float | None = None,
        tz: str | None = None,
        max_running: int | None = None,
        rate_limit: str | None = None,
        result_ttl: float | None = None,
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
