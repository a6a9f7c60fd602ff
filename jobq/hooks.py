"""Hooks: functions an app registers to hear about its jobs (``jobq.on_failure`` and friends).

::

    @jobq.on_failure
    def alert(event: jobq.JobEvent) -> None: ...     # sync hooks run in a thread

    @jobq.on_success(timeout=30)
    async def audit(event: jobq.JobEvent) -> None: ...

Hooks are registered when the app module is imported (``jobq worker APP``) and run in the
worker process, after the fact: ``on_start`` as an attempt starts, ``on_success`` and
``on_failure`` once the outcome is committed (``on_failure`` only for a job that failed for
good), ``on_retry`` once a retry is scheduled. They run as background tasks of the worker,
at most ``CONCURRENCY`` at once, each bounded by its timeout (``DEFAULT_TIMEOUT``): a hook that
raises is logged with its traceback; one that hangs is logged and abandoned (an async hook is
cancelled, a sync hook's thread is left behind, as Python cannot stop a thread). Neither
changes the job's outcome nor stalls the worker. When more than ``BACKLOG`` events wait for
a free slot, further events are dropped and logged.

Failure story: hooks run after the spool has recorded what happened, so a worker killed
while a hook runs loses that hook call, never the job's outcome. Hooks are at most once.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import anyio

from jobq.errors import ConfigurationError
from jobq.registry import origin
from jobq.runner import run_in_daemon_thread

if TYPE_CHECKING:
    from collections.abc import Callable

    from anyio.abc import TaskStatus
    from anyio.streams.memory import MemoryObjectSendStream

__all__ = (
    "BACKLOG",
    "CONCURRENCY",
    "DEFAULT_TIMEOUT",
    "HookRunner",
    "JobEvent",
    "hooks_for",
    "on_failure",
    "on_retry",
    "on_start",
    "on_success",
)

logger = logging.getLogger("jobq.hooks")

#: Seconds a hook may run before it is abandoned, unless it was registered with ``timeout=``.
DEFAULT_TIMEOUT = 10.0
#: Hook calls running at once in one worker.
CONCURRENCY = 8
#: Events waiting for a free slot before further ones are dropped.
BACKLOG = 1000

Kind = Literal["start", "success", "failure", "retry"]
F = TypeVar("F", bound="Callable[[JobEvent], Any]")


@dataclass(frozen=True, slots=True)
class JobEvent:
    """What a hook is told about one attempt of one job.

    Attributes:
        kind: which hook fired: ``start``, ``success``, ``failure`` or ``retry``.
        id: the job's id.
        name: the registered job name.
        queue: its queue.
        attempt: 1 for the first start, 2 for the second, ... (as ``current_job().attempt``).
        max_attempts: the attempt number after which no retry is left.
        args: the job's positional arguments.
        kwargs: the job's keyword arguments.
        result: the return value (``success``).
        error: ``{"type", "message", "traceback"}`` (``failure``, and ``retry`` when the attempt
            raised; None when it asked for the retry with ``jobq.Retry``).
        duration: seconds the attempt ran (None for ``start``).
        retry_delay: seconds until the next attempt (``retry``).
        worker: the id of the worker that ran the attempt.
        spool: the spool's path.
        at: when the event happened (epoch seconds).
    """

    kind: str
    id: str
    name: str
    queue: str
    attempt: int
    max_attempts: int
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: dict[str, str] | None = None
    duration: float | None = None
    retry_delay: float | None = None
    worker: str = ""
    spool: str = ""
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class _Hook:
    func: Callable[[JobEvent], Any]
    timeout: float

    @property
    def label(self) -> str:
        module = getattr(self.func, "__module__", None) or "?"
        return f"{module}.{getattr(self.func, '__qualname__', repr(self.func))}"

    @property
    def is_async(self) -> bool:
        call = getattr(self.func, "__call__", None)  # noqa: B004 - async __call__ counts too
        return inspect.iscoroutinefunction(self.func) or inspect.iscoroutinefunction(call)


_HOOKS: dict[str, list[_Hook]] = {"start": [], "success": [], "failure": [], "retry": []}


def hooks_for(kind: str) -> list[_Hook]:
    """The hooks registered for ``kind`` (a copy)."""
    return list(_HOOKS[kind])


def _check_timeout(timeout: float) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ConfigurationError(f"hook timeout must be seconds > 0, got {timeout!r}")


def _register(kind: Kind, func: F, timeout: float) -> F:
    if not callable(func):
        raise ConfigurationError(f"@jobq.on_{kind} decorates a function, got {func!r}")
    _check_timeout(timeout)
    hooks = _HOOKS[kind]
    # An app module imported twice (as a script and as a module) must not run its hooks twice.
    hooks[:] = [h for h in hooks if origin(h.func) != origin(func)]
    hooks.append(_Hook(func, float(timeout)))
    return func


def _decorator(kind: Kind, func: F | None, timeout: float) -> F | Callable[[F], F]:
    _check_timeout(timeout)
    if func is None:
        return functools.partial(_register, kind, timeout=timeout)
    return _register(kind, func, timeout)


@overload
def on_start(func: F, /) -> F: ...
@overload
def on_start(*, timeout: float = ...) -> Callable[[F], F]: ...
def on_start(func: F | None = None, /, *, timeout: float = DEFAULT_TIMEOUT) -> F | Callable[[F], F]:
    """Register ``func(event)`` to run as each attempt of a job starts.

    Use bare (``@jobq.on_start``) or with a timeout (``@jobq.on_start(timeout=30)``). The hook
    runs beside the job, not before it: the job does not wait for it.

    Raises:
        ConfigurationError: if ``func`` is not callable or ``timeout`` is not > 0.
    """
    return _decorator("start", func, timeout)


@overload
def on_success(func: F, /) -> F: ...
@overload
def on_success(*, timeout: float = ...) -> Callable[[F], F]: ...
def on_success(
    func: F | None = None, /, *, timeout: float = DEFAULT_TIMEOUT
) -> F | Callable[[F], F]:
    """Register ``func(event)`` to run once a job's ``done`` record is committed.

    ``event.result`` is the job's return value and ``event.duration`` how long it ran.

    Raises:
        ConfigurationError: if ``func`` is not callable or ``timeout`` is not > 0.
    """
    return _decorator("success", func, timeout)


@overload
def on_failure(func: F, /) -> F: ...
@overload
def on_failure(*, timeout: float = ...) -> Callable[[F], F]: ...
def on_failure(
    func: F | None = None, /, *, timeout: float = DEFAULT_TIMEOUT
) -> F | Callable[[F], F]:
    """Register ``func(event)`` to run once a job failed for good (its ``failed`` record is
    committed: no retries left, or an error that is never retried).

    An attempt that fails and is retried fires ``on_retry`` instead. ``event.error`` holds the
    error's type, message and traceback.

    Raises:
        ConfigurationError: if ``func`` is not callable or ``timeout`` is not > 0.
    """
    return _decorator("failure", func, timeout)


@overload
def on_retry(func: F, /) -> F: ...
@overload
def on_retry(*, timeout: float = ...) -> Callable[[F], F]: ...
def on_retry(func: F | None = None, /, *, timeout: float = DEFAULT_TIMEOUT) -> F | Callable[[F], F]:
    """Register ``func(event)`` to run once a failed attempt's retry is scheduled.

    ``event.retry_delay`` is the wait before the next attempt; ``event.error`` the error of
    this one (None when the job raised ``jobq.Retry``).

    Raises:
        ConfigurationError: if ``func`` is not callable or ``timeout`` is not > 0.
    """
    return _decorator("retry", func, timeout)


class HookRunner:
    """Runs hook calls as background tasks of a worker, bounded in number and time.

    ``run()`` is the task (start it with ``task_group.start``); ``fire()`` hands it a call
    without waiting; ``drain()`` lets the calls already handed over finish (bounded by the
    longest hook timeout) and ends ``run()``.
    """

    def __init__(self, concurrency: int = CONCURRENCY, backlog: int = BACKLOG) -> None:
        self._concurrency = concurrency
        self._backlog = backlog
        self._send: MemoryObjectSendStream[tuple[_Hook, JobEvent]] | None = None
        self._finished: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None

    def wanted(self, kind: str) -> bool:
        """Whether any hook is registered for ``kind`` (building an event is then worth it)."""
        return bool(_HOOKS[kind]) and self._send is not None

    def fire(self, event: JobEvent) -> None:
        """Hand ``event`` to every hook of its kind; never waits, never raises."""
        if self._send is None:
            return
        for hook in _HOOKS[event.kind]:
            try:
                self._send.send_nowait((hook, event))
            except anyio.WouldBlock:
                logger.error(
                    "hook %s for job %s[%s] dropped: %d hook calls already waiting",
                    hook.label, event.name, event.id, self._backlog,
                )  # fmt: skip
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run hook calls as they come, until ``drain()`` (or cancellation)."""
        send, receive = anyio.create_memory_object_stream[tuple[_Hook, JobEvent]](self._backlog)
        slots = anyio.Semaphore(self._concurrency)
        self._send = send
        self._finished = anyio.Event()
        try:
            with anyio.CancelScope() as self._scope:
                async with receive, anyio.create_task_group() as calls:
                    task_status.started()
                    async for hook, event in receive:
                        await slots.acquire()
                        calls.start_soon(self._call, hook, event, slots)
        finally:
            self._send = None
            send.close()
            self._finished.set()

    async def drain(self) -> None:
        """Stop taking calls, let those handed over finish, at most for the longest timeout."""
        send, finished = self._send, self._finished
        if send is None or finished is None:
            return
        send.close()
        longest = max((h.timeout for hooks in _HOOKS.values() for h in hooks), default=0.0)
        with anyio.move_on_after(longest + 1.0) as waited:
            await finished.wait()
        if waited.cancelled_caught and self._scope is not None:
            logger.error("hooks still running after %g s at shutdown: abandoned", longest)
            self._scope.cancel()

    async def _call(self, hook: _Hook, event: JobEvent, slots: anyio.Semaphore) -> None:
        try:
            with anyio.move_on_after(hook.timeout) as limit:
                if hook.is_async:
                    await hook.func(event)
                else:
                    await run_in_daemon_thread(functools.partial(hook.func, event))
            if limit.cancelled_caught:
                logger.error(
                    "hook %s for job %s[%s] (%s) still running after %g s: abandoned",
                    hook.label, event.name, event.id, event.kind, hook.timeout,
                )  # fmt: skip
        except Exception:
            logger.exception(
                "hook %s for job %s[%s] (%s) raised", hook.label, event.name, event.id, event.kind
            )
        finally:
            slots.release()
