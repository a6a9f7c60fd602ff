"""The producer side: a registered job's ``JobFunction`` (a plain call, ``options``, the three
enqueues) and ``jobq.call``. ``@job`` and ``jobq.Spool`` make them (``jobq.decorator``)."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, cast

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
from jobq.model import Job, new_job_id
from jobq.names import check_job_id, check_queue

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from jobq.decorator import Spool
    from jobq.registry import JobSpec
    from jobq.spool import SpoolDir

__all__ = ("Call", "JobFunction", "JobOptions", "call", "check_priority")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def check_priority(priority: int) -> None:
    """Refuse a priority that is not an integer in range (``ConfigurationError``)."""
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

    def __call__(self, /, *args: P.args, **kwargs: P.kwargs) -> R:
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
            check_priority(priority)
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

    async def enqueue(self, /, *args: P.args, **kwargs: P.kwargs) -> JobHandle[T]:
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

    def enqueue_sync(self, /, *args: P.args, **kwargs: P.kwargs) -> JobHandle[T]:
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
