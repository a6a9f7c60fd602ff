"""Example jobs: one async, one sync, one that fails. Run a worker with `jobq worker tasks`."""

from __future__ import annotations

import time

import anyio

import jobq


@jobq.job
async def add(x: int, y: int) -> int:
    """Add two numbers after a short async pause."""
    await anyio.sleep(0.001)
    jobq.current_job().log.info("adding %d and %d", x, y)
    return x + y


@jobq.job(queue="cpu", retries=1, retry_delay=0.05)
def slow_square(n: int) -> int:
    """Square a number in a worker thread (a sync job)."""
    time.sleep(0.001)
    return n * n


@jobq.job(queue="cpu")
def explode(message: str) -> None:
    """Always fail, to show how failures come back."""
    raise ValueError(message)
