"""Running one attempt of one job and classifying how it ended.

The worker decides what to do with the job file; this module only calls the function (as a
task for ``async def``, in a thread for sync functions), under the job's timeout and cancel
scope, and reports what happened.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import random
import threading
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import orjson

from jobq.errors import Retry, SerializationError

if TYPE_CHECKING:
    from collections.abc import Callable

    from jobq.model import Job
    from jobq.registry import JobSpec

__all__ = ("OVERRUN_SLACK", "Ending", "backoff_delay", "error_info", "run_attempt")

logger = logging.getLogger("jobq.worker")

#: An async job that ends later than its deadline by more than this share of its timeout (at
#: most 1 s) blocked the event loop: it fails with ``TimeoutError`` even if it returned.
OVERRUN_SLACK = 0.1


@dataclass(slots=True)
class Ending:
    """How an attempt ended.

    Attributes:
        kind: ``done``, ``error`` (may retry), ``fatal`` (never retry), ``retry`` (job raised
            ``jobq.Retry``) or ``interrupted`` (cancelled from outside: see the worker).
        result: the return value for ``done``.
        error: ``{"type", "message", "traceback"}`` for ``error`` and ``fatal``.
        delay: the delay asked for by ``jobq.Retry``.
    """

    kind: str
    result: Any = None
    error: dict[str, str] | None = None
    delay: float | None = None


def error_info(exc: BaseException) -> dict[str, str]:
    """The stored form of an exception: qualified type, message and formatted traceback."""
    cls = type(exc)
    qualified = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    return {
        "type": qualified,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def backoff_delay(job: Job, attempt: int) -> float:
    """``retry_delay * 2**(attempt-1)``, with up to 25% jitter so retries do not stampede."""
    base = job.retry_delay * 2.0 ** max(0, attempt - 1 - job.attempts_base)
    return float(base * (1 + random.uniform(0, 0.25)))


async def run_attempt(
    spec: JobSpec,
    job: Job,
    scope: anyio.CancelScope,
    before: Callable[[], object] | None = None,
) -> Ending:
    """Run the job's function once under ``scope`` and the job's timeout.

    ``before`` is called right before the function (in its thread, for a sync job): what must
    happen at the job's very first line (``jobq.limits`` stamps the start of a rate window).

    A cancellation of ``scope`` from outside ends as ``interrupted``; hitting the timeout is
    a failure that names the limit. A result that JSON cannot carry is a ``fatal`` failure.

    An ``async def`` that blocks the event loop (``time.sleep``, sync I/O, CPU work) cannot be
    cancelled while it blocks: if it ends well past its deadline, even with a result, the
    attempt fails with ``TimeoutError`` and the worker logs a warning naming the job.
    """
    timeout = job.timeout if job.timeout is not None else spec.timeout
    value: Any = None
    limit: anyio.CancelScope | None = None  # none (a cost per job) for a job without a limit
    try:
        with scope:
            if timeout is None:
                value = await _call(spec, job, before)
            else:
                limit = anyio.CancelScope(deadline=anyio.current_time() + timeout)
                with limit:
                    value = await _call(spec, job, before)
    except Retry as exc:
        return Ending("retry", delay=exc.delay)
    except Exception as exc:
        return Ending("error", error=error_info(exc))
    if scope.cancelled_caught:
        return Ending("interrupted")
    if limit is None or timeout is None:
        return _done(value)
    blocked = spec.is_async and _blocked(job, limit, timeout)
    if limit.cancelled_caught or blocked:
        if not spec.is_async:
            note = " (a sync job cannot be stopped: its thread was abandoned)"
        elif blocked:
            note = " (it blocked the event loop, so it could not be stopped in time)"
        else:
            note = ""
        err = TimeoutError(f"job {job.name} timed out after {timeout:g} s{note}")
        return Ending("error", error=error_info(err))
    return _done(value)


def _done(value: Any) -> Ending:
    """A successful attempt's ending; ``fatal`` if JSON cannot carry its result."""
    if value is None:
        return Ending("done", result=None)
    try:
        orjson.dumps(value)
    except TypeError as exc:
        err2 = SerializationError(f"the job's result cannot be stored as JSON: {exc}")
        return Ending("fatal", error=error_info(err2))
    return Ending("done", result=value)


def _blocked(job: Job, limit: anyio.CancelScope, timeout: float) -> bool:
    """Whether an async job ended well past its deadline, so it blocked the event loop.

    Logs a warning naming the job if so: a cancel scope can only stop a task at an ``await``.
    """
    late = anyio.current_time() - limit.deadline
    if late <= min(1.0, OVERRUN_SLACK * timeout):
        return False
    logger.warning(
        "job %s (%s) overran its timeout of %g s by %.2f s: the event loop was blocked "
        "(time.sleep, sync I/O or CPU work in an async def: this job or another), so it could "
        "not be stopped; the attempt fails with TimeoutError. Make blocking jobs sync "
        "functions, or use async libraries.",
        job.name,
        job.id,
        timeout,
        late,
    )
    return True


async def _call(spec: JobSpec, job: Job, before: Callable[[], object] | None) -> Any:
    if spec.is_async:
        if before is not None:
            before()
        return await spec.func(*job.args, **job.kwargs)
    call = functools.partial(spec.func, *job.args, **job.kwargs)
    if before is None:
        return await run_in_daemon_thread(call)

    def first_line() -> Any:
        before()
        return call()

    return await run_in_daemon_thread(first_line)


async def run_in_daemon_thread(call: Callable[[], Any]) -> Any:
    """Run ``call`` in a fresh daemon thread (with this task's context) and wait for it.

    Cancelling the wait (timeout, ``jobq cancel``, shutdown) abandons the thread: Python cannot
    stop it. It is a daemon so that it cannot keep the worker process alive once the worker is
    done: anyio's own worker threads are not daemons on asyncio, and the interpreter would wait
    at exit for a job that may never end.
    """
    token = anyio.lowlevel.current_token()
    finished = anyio.Event()
    box: list[Any] = []  # [value] or [None, exception]
    context = contextvars.copy_context()  # current_job() and log capture work in the thread

    def target() -> None:
        try:
            box.append(context.run(call))
        except BaseException as exc:
            box.extend((None, exc))
        # The event loop may be gone (an abandoned job outliving its worker): nobody waits.
        with contextlib.suppress(Exception):
            anyio.from_thread.run_sync(finished.set, token=token)

    threading.Thread(target=target, name="jobq-sync-job", daemon=True).start()
    await finished.wait()
    if len(box) == 2:
        raise box[1]
    return box[0]
