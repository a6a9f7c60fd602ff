"""``jobq status`` with many retained records: how long the command takes.

    python benchmarks/status_bench.py [--records 1000000] [--dir /tmp]

Creates a spool whose ``done/default/`` holds ``--records`` empty ``ID.json`` files (status
only counts names, so their contents do not matter), then times the installed ``jobq status``
(a fresh process each time, so Python's start-up counts) and prints the median of five runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import jobq


def create_records(spool: str, n: int) -> None:
    jobq.Spool(spool).dir.ensure_queue("default")
    done = os.path.join(spool, "done", "default")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for i in range(n):
        os.close(os.open(os.path.join(done, f"{i:012x}{os.getpid():08x}cafe0000.json"), flags))


def time_status(spool: str, *extra: str) -> float:
    command = [os.path.join(os.path.dirname(sys.executable), "jobq"), "status", "--spool", spool]
    took = []
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run([*command, *extra], check=True, capture_output=True)
        took.append(time.perf_counter() - start)
    return statistics.median(took)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="status-bench-", dir=args.dir)
    spool = os.path.join(work, "spool")
    try:
        start = time.perf_counter()
        create_records(spool, args.records)
        made = time.perf_counter() - start
        empty = tempfile.mkdtemp(prefix="status-empty-", dir=args.dir)
        baseline = time_status(os.path.join(empty, "spool"))
        shutil.rmtree(empty)
        plain = time_status(spool)
        as_json = time_status(spool, "--json")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.records} done records (created in {made:.0f} s)")
    print(f"jobq status         median {plain:.3f} s")
    print(f"jobq status --json  median {as_json:.3f} s")
    print(f"(jobq status on an empty spool: {baseline:.3f} s, Python start-up included)")


if __name__ == "__main__":
    main()
