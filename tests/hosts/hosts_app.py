"""Jobs for the multi-host suite: ``jobq worker hosts_app`` (run with ``cwd=tests/hosts/``).

``record`` leaves a side effect outside the spool, in a file local to the host it ran on:
one line ``JOB_ID HOST PID ATTEMPT`` appended to ``$JOBQ_HOSTS_OUT/$JOBQ_HOSTS_HOST.txt``
(``O_APPEND`` writes of one short line are atomic), written when the attempt starts. The tests
compare those lines with the outcome records in the spool: which attempt ran last, and where.

Run as a script it enqueues jobs, so that a producer can run inside a host's network namespace:
``python hosts_app.py SPOOL COUNT BATCH [CHUNK INTERVAL]`` enqueues COUNT ``record(BATCH)`` jobs
(in batches of CHUNK, one every INTERVAL seconds) and prints their ids, one a line, as it goes.
"""

from __future__ import annotations

import os
import random
import sys
import time

import anyio

import jobq

__all__ = ("enqueue", "read_lines", "record")

OUT_ENV = "JOBQ_HOSTS_OUT"
HOST_ENV = "JOBQ_HOSTS_HOST"


@jobq.job(name="hosts_app.record")
async def record(batch: str, seconds: float = 0.0) -> dict[str, object]:
    """Append ``JOB_ID HOST PID ATTEMPT`` to this host's file, then sleep ``seconds``.

    A ``seconds`` of 0 sleeps a random 5-20 ms. Returns where it ran.
    """
    ctx = jobq.current_job()
    host = os.environ.get(HOST_ENV, "local")
    line = f"{ctx.id} {host} {os.getpid()} {ctx.attempt}\n".encode()
    path = os.path.join(os.environ.get(OUT_ENV, "."), f"{host}.txt")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    await anyio.sleep(seconds or random.uniform(0.005, 0.02))
    return {"batch": batch, "host": host, "pid": os.getpid(), "attempt": ctx.attempt}


def read_lines(path: str | os.PathLike[str]) -> list[tuple[str, str, int, int]]:
    """The lines ``record`` wrote to one host's file: (job id, host, pid, attempt)."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    rows = []
    for line in text.splitlines():
        job_id, host, pid, attempt = line.split(" ")
        rows.append((job_id, host, int(pid), int(attempt)))
    return rows


def enqueue(spool: str, count: int, batch: str) -> list[str]:
    """Enqueue ``count`` ``record`` jobs into ``spool`` in one batch; their ids."""
    function = jobq.Spool(spool).job(name="hosts_app.record")(record.func)
    handles = anyio.run(function.enqueue_many, [(batch,) for _ in range(count)])
    return [h.id for h in handles]


def produce(spool: str, count: int, batch: str, chunk: int, interval: float) -> None:
    """Enqueue ``count`` jobs in chunks, one chunk every ``interval`` s; print the ids."""
    next_at = time.monotonic()
    while count > 0:
        ids = enqueue(spool, min(chunk, count), batch)
        count -= len(ids)
        print("\n".join(ids), flush=True)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


if __name__ == "__main__":
    spool_arg, count_arg, batch_arg, *rest = sys.argv[1:]
    chunk_arg, interval_arg = rest or [count_arg, "0"]
    produce(spool_arg, int(count_arg), batch_arg, int(chunk_arg), float(interval_arg))
