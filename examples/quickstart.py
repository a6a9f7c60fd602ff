"""The quickstart demo (`make run`): start a worker, enqueue jobs, wait for results, show status.

Run from the repository root. It uses a fresh spool in a temporary directory, starts
`jobq worker tasks` as a separate process, as you would in production, and enqueues from
asyncio code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import anyio

import jobq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tasks


async def main(spool: str) -> None:
    """Enqueue a batch of async and sync jobs, wait for them, and print what came back."""
    jobq.configure(spool=spool)
    started = time.perf_counter()
    adds = await tasks.add.enqueue_many([(i, i) for i in range(100)])
    squares = await tasks.slow_square.enqueue_many([(i,) for i in range(100)])
    boom = await tasks.explode.enqueue("this job fails on purpose")
    enqueued = time.perf_counter() - started
    print(f"enqueued 201 jobs in {enqueued * 1000:.0f} ms ({201 / enqueued:.0f} jobs/s)")

    results = [await h.result(timeout=60) for h in adds + squares]
    elapsed = time.perf_counter() - started
    print(f"all 200 results back in {elapsed:.2f} s ({200 / elapsed:.0f} jobs/s end to end)")
    print("add(7, 7) =", results[7], "  slow_square(9) =", results[109])
    try:
        await boom.result(timeout=60)
    except jobq.JobFailed as exc:
        print(f"the failing job raised {exc.error_type}: {exc.error_message}")
    print(f"log of job {adds[3].id}: {(await adds[3].log()).strip()}")


def run_demo() -> None:
    """Run the whole demo against a throwaway spool."""
    spool = tempfile.mkdtemp(prefix="jobq-demo-")
    env = {**os.environ, "JOBQ_SPOOL": spool}
    here = os.path.dirname(os.path.abspath(__file__))
    jobq_cmd = [sys.executable, "-m", "jobq"]
    worker = subprocess.Popen(
        [*jobq_cmd, "worker", "tasks", "--queues", "default,cpu", "--concurrency", "20"],
        cwd=here,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        anyio.run(main, spool)
        print()
        subprocess.run([*jobq_cmd, "status"], env=env, check=True)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    print(f"\nspool left at {spool}: try `jobq status --spool {spool}` or `ls -R {spool}`")


if __name__ == "__main__":
    run_demo()
