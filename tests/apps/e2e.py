"""Jobs for the end-to-end tests: async and sync, two queues, failures, logs, side effects.

Every job has an explicit name so that the test process and the worker process agree on it
however they import this module.
"""

from __future__ import annotations

import logging
import time

import anyio
import sniffio

import jobq

QUEUE_CPU = "cpu"

stdlib_logger = logging.getLogger("apps.e2e")


class Boom(Exception):
    """The error the failing jobs raise (its qualified name travels back as ``error_type``)."""


@jobq.job(name="e2e.add")
async def add(x: int, y: int) -> int:
    """Add two numbers after yielding to the event loop once."""
    await anyio.sleep(0)
    return x + y


@jobq.job(name="e2e.square", queue=QUEUE_CPU)
def square(n: int) -> int:
    """Square a number in a worker thread."""
    return n * n


@jobq.job(name="e2e.fail")
async def fail(message: str) -> None:
    """Always raise ``Boom(message)``."""
    raise Boom(message)


@jobq.job(name="e2e.fail_sync", queue=QUEUE_CPU)
def fail_sync(message: str) -> None:
    """Always raise ``ValueError(message)`` from a worker thread."""
    raise ValueError(message)


@jobq.job(name="e2e.backend")
async def backend() -> str:
    """The name of the event loop library the worker runs this job on."""
    return sniffio.current_async_library()


@jobq.job(name="e2e.chatty")
async def chatty(word: str) -> str:
    """Log through the job's logger and through stdlib ``logging``; return ``word``."""
    jobq.current_job().log.info("job logger says %s", word)
    stdlib_logger.warning("stdlib logging says %s", word)
    return word


@jobq.job(name="e2e.chatty_sync", queue=QUEUE_CPU)
def chatty_sync(word: str) -> str:
    """``chatty`` for a sync job running in a thread (through ``logger``, ``log``'s alias)."""
    jobq.current_job().logger.info("job logger says %s", word)
    stdlib_logger.warning("stdlib logging says %s", word)
    return word


@jobq.job(name="e2e.record")
def record(path: str, tag: str) -> str:
    """Append ``tag`` as a line to the file at ``path`` (a side effect that shows run order)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(tag + "\n")
    return tag


@jobq.job(name="e2e.stamp")
async def stamp() -> float:
    """The wall-clock time at which the job ran."""
    return time.time()
