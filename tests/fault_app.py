"""Jobs for the fault tests: importable by ``jobq worker fault_app`` (run with ``cwd=tests/``).

Every job leaves a side effect a test can check from outside the worker: it appends one line
``JOB_ID ATTEMPT PID EVENT`` to a file (``O_APPEND`` writes of one short line are atomic), so a
test sees which process started, finished or was stopped in which job, without any sleeps.
Names are explicit so that the test process (which imports this as ``fault_app``) and the
workers agree on them.
"""

from __future__ import annotations

import os
import time

import anyio

import jobq

__all__ = (
    "always_fail",
    "blob",
    "chatty",
    "fail_until",
    "mark",
    "nap",
    "nap_sync",
    "retry_later",
    "slow",
    "slow_sync",
)


def note(path: str, event: str) -> None:
    """Append ``JOB_ID ATTEMPT PID EVENT`` to ``path`` (the job's visible side effect)."""
    ctx = jobq.current_job()
    line = f"{ctx.id} {ctx.attempt} {os.getpid()} {event}\n".encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_notes(path: str | os.PathLike[str]) -> list[tuple[str, int, int, str]]:
    """The lines ``note`` wrote: (job id, attempt, pid, event)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        job_id, attempt, pid, event = line.split(" ")
        rows.append((job_id, int(attempt), int(pid), event))
    return rows


@jobq.job(name="fault_app.mark")
async def mark(out: str, seconds: float = 0.0) -> int:
    """Note ``start``, sleep, note ``end``; returns the worker's pid."""
    note(out, "start")
    await anyio.sleep(seconds)
    note(out, "end")
    return os.getpid()


@jobq.job(name="fault_app.nap")
async def nap(out: str, seconds: float) -> int:
    """Like ``mark`` (a separate name so tests can tell long sleepers apart)."""
    note(out, "start")
    await anyio.sleep(seconds)
    note(out, "end")
    return os.getpid()


@jobq.job(name="fault_app.nap_sync")
def nap_sync(out: str, seconds: float) -> int:
    """A sync job (runs in a thread) that blocks for ``seconds``."""
    note(out, "start")
    time.sleep(seconds)
    note(out, "end")
    return os.getpid()


@jobq.job(name="fault_app.fail_until", retries=2, retry_delay=0.01)
async def fail_until(out: str, good_from: int) -> int:
    """Fail with ``RuntimeError`` until attempt ``good_from``; returns the attempt number."""
    note(out, "start")
    attempt = jobq.current_job().attempt
    if attempt < good_from:
        raise RuntimeError(f"flaky failure on attempt {attempt}")
    return attempt


@jobq.job(name="fault_app.always_fail", queue="faults", retries=1, retry_delay=0.01)
def always_fail(out: str) -> None:
    """A sync job that always fails, naming its attempt in the error."""
    note(out, "start")
    raise ValueError(f"boom on attempt {jobq.current_job().attempt}")


@jobq.job(name="fault_app.retry_later", retries=3)
async def retry_later(out: str, delay: float) -> int:
    """Ask for another attempt in ``delay`` seconds once, then succeed."""
    note(out, "start")
    attempt = jobq.current_job().attempt
    if attempt == 1:
        raise jobq.Retry(delay=delay)
    return attempt


@jobq.job(name="fault_app.slow", timeout=0.2)
async def slow(out: str, seconds: float) -> None:
    """An async job with a 0.2 s timeout."""
    note(out, "start")
    await anyio.sleep(seconds)
    note(out, "end")


@jobq.job(name="fault_app.slow_sync", timeout=0.2)
def slow_sync(out: str, seconds: float) -> None:
    """A sync job with a 0.2 s timeout: its thread cannot be stopped."""
    note(out, "start")
    time.sleep(seconds)
    note(out, "end")


@jobq.job(name="fault_app.blob")
async def blob(size: int) -> str:
    """Return ``size`` bytes of text (to fill a disk with a result)."""
    return "x" * size


@jobq.job(name="fault_app.chatty")
async def chatty(lines: int) -> str:
    """Log ``lines`` lines, return ``"ok"``."""
    for n in range(lines):
        jobq.current_job().log.info("line %d", n)
    return "ok"
