"""What running small spool calls on the event loop's thread (``jobq/inline.py``) buys.

Two measurements, each alternating between the gate as shipped ("inline") and every call sent
to a worker thread ("thread", what jobq did before), medians of ``--rounds``:

1. ``enqueue``: one producer on asyncio and one on trio, ``--enqueues`` awaited single
   enqueues into a fresh non-durable spool; µs per call.
2. ``drain``: ``--jobs`` non-durable jobs enqueued first, then one ``jobq worker --burst
   --concurrency 10`` process drains them; jobs/s from the worker's start to its exit.

Run on each ``--dir`` given (default: tmpfs and /var/tmp):

    python benchmarks/inline_gate.py [--rounds 5] [--jobs 20000] [--dir /dev/shm --dir /var/tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Sends every gated call to a thread: the gate refuses everything.
THREADS_ONLY = """
import jobq.inline, jobq.settle, jobq.worker, jobq.api
never = lambda root, durable: jobq.inline.InlineGate(False)
jobq.inline.gate_for = jobq.settle.gate_for = jobq.worker.gate_for = jobq.api.gate_for = never
"""

ENQUEUE = """
import sys, time, anyio, jobq
spool = jobq.Spool(sys.argv[1], durable=False)

@spool.job(name="bench.noop")
async def noop() -> None: ...

async def main() -> None:
    await anyio.to_thread.run_sync(noop.enqueue_sync)  # creates the queue
    begin = time.perf_counter()
    for _ in range({n}):
        await noop.enqueue()
    print((time.perf_counter() - begin) / {n} * 1e6)

anyio.run(main, backend=sys.argv[2])
"""

DRAIN = """
import sys
from jobq.cli import main
sys.argv = ["jobq", "worker", "public_jobq", "--burst", "--concurrency", "10"]
main()
"""


def run_python(code: str, *args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=HERE, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout


def enqueue_us(work: str, mode: str, backend: str, n: int) -> float:
    spool = tempfile.mkdtemp(dir=work, prefix="enqueue-")
    prefix = THREADS_ONLY if mode == "thread" else ""
    return float(run_python(prefix + ENQUEUE.format(n=n), spool, backend).split()[-1])


def drain_per_s(work: str, mode: str, jobs: int) -> float:
    spool = tempfile.mkdtemp(dir=work, prefix="drain-")
    env = dict(os.environ, JOBQ_SPOOL=spool, JOBQ_DURABLE="0")
    produce = f"import sys, public_jobq; sys.argv = ['', 'enqueue', '{jobs}']; public_jobq.main()"
    json.loads(run_python(produce, env=env).splitlines()[-1])
    prefix = THREADS_ONLY if mode == "thread" else ""
    begin = time.perf_counter()
    run_python(prefix + DRAIN, env=env)
    return jobs / (time.perf_counter() - begin)


def rounds(work: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Every measurement of ``--rounds`` rounds, alternating which mode goes first."""
    results: dict[str, list[float]] = {}
    for number in range(args.rounds):
        modes = ("inline", "thread") if number % 2 == 0 else ("thread", "inline")
        for mode in modes:
            for backend in ("asyncio", "trio"):
                key = f"enqueue {backend} {mode} (µs per call)"
                results.setdefault(key, []).append(enqueue_us(work, mode, backend, args.enqueues))
            key = f"drain {mode} (jobs/s)"
            results.setdefault(key, []).append(drain_per_s(work, mode, args.jobs))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--enqueues", type=int, default=3000)
    parser.add_argument("--dir", action="append", help="where spools go (repeatable)")
    args = parser.parse_args()
    for base in args.dir or ["/dev/shm", "/var/tmp"]:
        # Nothing is deleted until the end: creating files right after a mass deletion is
        # 2-3x slower on some disks (docs/performance.md), which would favour neither mode.
        work = tempfile.mkdtemp(dir=base, prefix="inline-gate-")
        try:
            results = rounds(work, args)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"\n{base}: medians of {args.rounds} alternating rounds")
        for key in sorted(results):
            values = results[key]
            shown = ", ".join(f"{v:,.0f}" for v in values)
            print(f"- {key}: {statistics.median(values):,.0f}  ({shown})")


if __name__ == "__main__":
    main()
