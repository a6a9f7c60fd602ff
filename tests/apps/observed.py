"""Jobs and hooks for the hook, worker-log and CLI tests.

Every hook here only acts on this module's jobs called with an ``out`` keyword argument (a file
that the hook appends one JSON line per event to), so the hooks stay out of the way of other
tests' workers in the same process. ``hook=...`` picks a misbehaving hook for a job.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import anyio

import jobq

#: Opened by the test to let the ``gate`` hook finish.
GATE = threading.Event()
#: Seconds the hanging hooks get before they are abandoned.
HANG_TIMEOUT = 0.5


class Boom(Exception):
    """What the failing job raises."""


@jobq.job(name="observed.ok")
async def ok(x: int, out: str = "", hook: str = "") -> int:
    """Return ``x * 2``."""
    return x * 2


@jobq.job(name="observed.boom", retries=1, retry_delay=0.05)
def boom(message: str, out: str = "", hook: str = "") -> None:
    """Log a line of its own, then fail every time (one retry, then failed for good)."""
    jobq.current_job().log.warning("about to fail: %s", message)
    raise Boom(message)


@jobq.job(name="observed.again", retries=1)
async def again(out: str = "") -> str:
    """Ask for a retry once (``jobq.Retry``), then succeed."""
    if jobq.current_job().attempt == 1:
        raise jobq.Retry(delay=0.05)
    return "second time lucky"


@jobq.job(name="observed.sleep")
async def sleep(seconds: float, out: str = "") -> None:
    """Sleep (long enough to be cancelled)."""
    await anyio.sleep(seconds)


@jobq.job(name="observed.progress")
async def progress(steps: int) -> int:
    """Report progress ``steps`` times; the last says ``done``."""
    for n in range(1, steps + 1):
        await jobq.current_job().progress(n, steps, "done" if n == steps else f"step {n}")
    return steps


@jobq.job(name="observed.echo")
def echo(value: Any) -> Any:
    """Return its argument (for huge results)."""
    return value


@jobq.job(name="observed.fence_me")
def fence_me(spool: str) -> int:
    """On its first attempt, do what a reaper does to a dead worker's job: move the job file
    from ``running/WORKER/`` back to ``pending/`` (docs/spool-format.md). That attempt's
    outcome is then fenced; the second attempt returns 2."""
    ctx = jobq.current_job()
    if ctx.attempt == 1:
        root = Path(spool)
        (held,) = root.glob(f"running/*/default@*-{ctx.id}-1.json")
        held.rename(root / "queues" / "default" / "pending" / held.name.partition("@")[2])
    return ctx.attempt


def _mine(event: jobq.JobEvent) -> str | None:
    out = event.kwargs.get("out")
    return out if event.name.startswith("observed.") and isinstance(out, str) and out else None


def _write(out: str, event: jobq.JobEvent, **extra: Any) -> None:
    line = {
        "kind": event.kind, "id": event.id, "name": event.name, "queue": event.queue,
        "attempt": event.attempt, "max_attempts": event.max_attempts, "args": event.args,
        "result": event.result, "error": event.error, "duration": event.duration,
        "retry_delay": event.retry_delay, "worker": event.worker, "spool": event.spool,
        "thread": threading.current_thread().name, **extra,
    }  # fmt: skip
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(line) + "\n")


@jobq.on_start
async def record_start(event: jobq.JobEvent) -> None:
    """An async hook."""
    if out := _mine(event):
        _write(out, event)


@jobq.on_success
def record_success(event: jobq.JobEvent) -> None:
    """A sync hook (runs in a thread)."""
    if out := _mine(event):
        _write(out, event)


@jobq.on_failure
def record_failure(event: jobq.JobEvent) -> None:
    """A sync hook."""
    if out := _mine(event):
        _write(out, event)


@jobq.on_retry
async def record_retry(event: jobq.JobEvent) -> None:
    """An async hook."""
    if out := _mine(event):
        _write(out, event)


@jobq.on_success
def raising_hook(event: jobq.JobEvent) -> None:
    """Raise for jobs called with ``hook="raise"``."""
    if _mine(event) and event.kwargs.get("hook") == "raise":
        raise RuntimeError("the hook itself is broken")


@jobq.on_success(timeout=HANG_TIMEOUT)
def hanging_sync_hook(event: jobq.JobEvent) -> None:
    """Hang (blocking a thread) for jobs called with ``hook="hang_sync"``."""
    if _mine(event) and event.kwargs.get("hook") == "hang_sync":
        time.sleep(5)


@jobq.on_success(timeout=HANG_TIMEOUT)
async def hanging_async_hook(event: jobq.JobEvent) -> None:
    """Hang (awaiting) for jobs called with ``hook="hang_async"``."""
    if _mine(event) and event.kwargs.get("hook") == "hang_async":
        await anyio.sleep(5)


@jobq.on_success(timeout=20)
def gated_hook(event: jobq.JobEvent) -> None:
    """For ``hook="gate"``: wait until the test opens ``GATE``, then write ``released``."""
    if (out := _mine(event)) and event.kwargs.get("hook") == "gate":
        GATE.wait(15)
        _write(out, event, released=GATE.is_set())
