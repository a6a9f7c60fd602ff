"""The public workload's job for jobq, and its producers (run by ``public_workload.py``).

``jobq worker public_jobq`` imports this module for the job. The driver runs the producers as
``python -c "import public_jobq; public_jobq.main()" COMMAND N`` so that the job's name is
``public_jobq.print_time`` on both sides; the spool and durability come from ``JOBQ_SPOOL`` and
``JOBQ_DURABLE``. Each command prints one JSON object on its last line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import anyio

import jobq


@jobq.job
async def print_time() -> None:
    """The workload's job: print one line with the time."""
    print(f"finished {time.time():.6f}", flush=True)


async def enqueue(n: int) -> dict[str, float]:
    """Enqueue ``n`` jobs one at a time, each call returning before the next."""
    begin = time.perf_counter()
    for _ in range(n):
        await print_time.enqueue()
    return {"per_s": n / (time.perf_counter() - begin)}


def enqueue_sync(n: int) -> dict[str, float]:
    """Enqueue ``n`` jobs one at a time from plain sync code (``enqueue_sync``), as a script
    or a Flask view would, and as the peers' producers do."""
    begin = time.perf_counter()
    for _ in range(n):
        print_time.enqueue_sync()
    return {"per_s": n / (time.perf_counter() - begin)}


async def enqueue_many(n: int, batch: int) -> dict[str, float]:
    """Enqueue ``n`` jobs in ``enqueue_many`` batches of ``batch``."""
    begin = time.perf_counter()
    for first in range(0, n, batch):
        await print_time.enqueue_many([()] * min(batch, n - first))
    return {"per_s": n / (time.perf_counter() - begin)}


async def round_trip(samples: int) -> dict[str, float]:
    """Enqueue one job and await its result, ``samples`` times, against an idle worker."""
    took = []
    for _ in range(samples + 3):  # the first three warm up (and create the queue)
        await anyio.sleep(0.002)
        begin = time.perf_counter()
        handle = await print_time.enqueue()
        await handle.result(timeout=60)
        took.append(time.perf_counter() - begin)
    took = sorted(took[3:])
    return {
        "p50_ms": statistics.median(took) * 1000,
        "p99_ms": took[min(len(took) - 1, int(len(took) * 0.99))] * 1000,
    }


async def enqueue_lag(n: int) -> dict[str, float]:
    """Enqueue ``n`` jobs one at a time while another task measures the event loop's lag.

    The other task yields and times how long the loop took to come back to it: a jobq call
    that blocks the loop (a file operation on its thread) shows as a long gap.
    """
    gaps: list[float] = []
    done = False

    async def watch() -> None:
        while not done:
            begin = time.perf_counter()
            await anyio.sleep(0)
            gaps.append(time.perf_counter() - begin)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await anyio.sleep(0.01)
        await print_time.enqueue()  # creates the queue's directories (in a thread)
        begin = time.perf_counter()
        for _ in range(n):
            await print_time.enqueue()
        elapsed = time.perf_counter() - begin
        done = True
    gaps.sort()
    return {
        "per_s": n / elapsed,
        "lag_p50_us": gaps[len(gaps) // 2] * 1e6,
        "lag_p99_us": gaps[int(len(gaps) * 0.99)] * 1e6,
        "lag_max_us": gaps[-1] * 1e6,
    }


def main() -> None:
    command, n = sys.argv[1], int(sys.argv[2])
    if command == "enqueue":
        out = anyio.run(enqueue, n)
    elif command == "enqueue-sync":
        out = enqueue_sync(n)
    elif command == "enqueue-many":
        out = anyio.run(enqueue_many, n, int(sys.argv[3]))
    elif command == "enqueue-lag":
        out = anyio.run(enqueue_lag, n)
    elif command == "round-trip":
        out = anyio.run(round_trip, n)
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(out))
