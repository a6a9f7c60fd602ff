"""Jobs for the operations tests: the supervisor, unknown job names, blocking timeouts.

This is the "old" app of the rolling-deploy tests: it does not register ``ops.new_job``
(``apps.ops_new`` does).
"""

from __future__ import annotations

import logging
import os
import sys
import time

import anyio

import jobq


@jobq.job(name="ops.pid")
async def pid() -> int:
    """The process id of the worker that ran the job."""
    return os.getpid()


@jobq.job(name="ops.nap")
async def nap(seconds: float) -> float:
    """Sleep without blocking the event loop."""
    await anyio.sleep(seconds)
    return seconds


@jobq.job(name="ops.block", timeout=0.2)
async def block(seconds: float) -> str:
    """Block the event loop (a bug: ``time.sleep`` in an ``async def``) past the timeout."""
    time.sleep(seconds)  # the bug under test
    return "finished anyway"


@jobq.job(name="ops.block_then_await", timeout=0.2)
async def block_then_await(seconds: float) -> str:
    """Block the event loop past the timeout, then reach an ``await`` (a cancel point)."""
    time.sleep(seconds)  # the bug under test
    await anyio.sleep(0)
    return "finished anyway"


@jobq.job(name="ops.say")
async def say(text: str) -> list[object]:
    """Write ``text`` to stderr (not a log line).

    Returns the worker's pid, its environment's log hand-over and the descriptor its log
    handler writes to.
    """
    print(text, file=sys.stderr, flush=True)
    handler = next(h for h in logging.getLogger().handlers if h.get_name() == "jobq-stderr")
    stream = getattr(handler, "stream", None)
    return [os.getpid(), os.environ.get("JOBQ_LOG_FD"), stream.fileno() if stream else None]
