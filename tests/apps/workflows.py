"""Jobs for the periodic, dependency, limit and expiry tests.

Each job appends one JSON line to a file in ``$JOBQ_TEST_OUT`` (appends of one short line are
atomic), so a test can see what ran, where and when, across worker processes.
"""

from __future__ import annotations

import json
import os
import time

import anyio

import jobq


def record(kind: str, **fields: object) -> None:
    """Append one line for this run to ``$JOBQ_TEST_OUT/KIND.jsonl``."""
    if "JOBQ_TEST_OUT" not in os.environ:
        return  # a worker of another test imported this app: its ticks record nothing
    ctx = jobq.current_job()
    line = json.dumps({"id": ctx.id, "attempt": ctx.attempt, "pid": os.getpid(), **fields})
    path = os.path.join(os.environ["JOBQ_TEST_OUT"], f"{kind}.jsonl")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


@jobq.job(name="wf.limited", max_running=3)
async def limited(n: int) -> int:
    """Hold a slot for a while, recording when it started and ended."""
    start = time.time()
    await anyio.sleep(0.3)
    record("limited", n=n, start=start, end=time.time())
    return n


@jobq.job(name="wf.rated", rate_limit="5/s")
def rated(n: int) -> int:
    """A job allowed 5 starts per second across the spool."""
    record("rated", n=n, start=time.time())
    return n


@jobq.job(name="wf.free")
async def free(n: int) -> int:
    """An unlimited job: it must flow past held-back ones."""
    record("free", n=n, start=time.time())
    return n


@jobq.job(name="wf.step")
async def step(label: str, pause: float = 0.0) -> str:
    """One step of a workflow: record its label (the order they ran in)."""
    await anyio.sleep(pause)
    record("steps", label=label, at=time.time())
    return label


@jobq.job(name="wf.broken")
async def broken(label: str) -> None:
    """A step that fails."""
    record("steps", label=label, at=time.time())
    raise RuntimeError(f"{label} broke")


@jobq.job(name="wf.brief", result_ttl=1)
async def brief(n: int) -> int:
    """A job whose done record expires after one second."""
    return n
