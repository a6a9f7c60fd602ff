"""Worker memory over many jobs: RSS of one ``jobq worker`` process as it drains a deep queue.

    python benchmarks/worker_memory.py [--jobs 100000] [--dir /tmp]

Queues ``--jobs`` no-op jobs (non-durable, to keep the run short), starts one worker, and
prints its resident set size after the first thousand jobs and after the last one, with a few
samples in between. A flat line means no per-job leak.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import anyio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peer_jobq

import jobq


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fill(spool: str, n: int) -> None:
    jobq.configure(spool=spool, durable=False)

    async def run() -> None:
        for first in range(0, n, 1000):
            await peer_jobq.noop.enqueue_many([()] * min(1000, n - first))

    anyio.run(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="worker-memory-", dir=args.dir)
    spool = os.path.join(work, "spool")
    try:
        fill(spool, args.jobs)
        pending = os.path.join(spool, "queues", "default", "pending")
        command = [
            os.path.join(os.path.dirname(sys.executable), "jobq"), "worker", "peer_jobq",
            "--spool", spool, "--no-durable", "--concurrency", "64",
        ]  # fmt: skip
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
        proc = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
        try:
            samples = watch(proc.pid, pending, args.jobs)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"worker RSS over {args.jobs} jobs (KiB, after N jobs done):")
    for done, rss in samples:
        print(f"  {done:>8} {rss:>8}")
    first, last = samples[0][1], samples[-1][1]
    print(f"growth {last - first:+} KiB ({(last - first) / first:+.1%}) from the first sample")


def watch(pid: int, pending: str, n: int) -> list[tuple[int, int]]:
    """(jobs done, RSS) after the first 1000 jobs, at every tenth of the way, and at the end."""
    samples: list[tuple[int, int]] = []
    marks = [1000, *range(n // 10, n + 1, n // 10)]
    while marks:
        left = len(os.listdir(pending))
        done = n - left
        if done >= marks[0]:
            samples.append((done, rss_kib(pid)))
            while marks and done >= marks[0]:
                marks.pop(0)
        time.sleep(0.2)
    return samples


if __name__ == "__main__":
    main()
