"""Where a draining worker's threads wait: their kernel wait channels, sampled from /proc.

Enqueues ``--jobs`` jobs of the public workload (``public_jobq.print_time``), starts ``jobq
worker public_jobq --processes P --burst`` on them, and every half millisecond, until it exits,
reads the state and wait channel (``/proc/PID/task/TID/wchan``) of every thread of its worker
processes. Prints how many samples each (thread, state, channel) got: the event loop's thread
as ``main``, the others (jobq's file threads, the inotify reader) as ``thread``. ``R`` is
running or runnable, ``S`` sleeping, ``D`` uninterruptible (a lock or the disk). The sampler
takes CPU itself: compare runs, not absolute counts.

    python benchmarks/wait_channels.py --dir /var/tmp [--durable] [--jobs 20000]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)


def sample(
    supervisor: subprocess.Popen[bytes], in_process: bool
) -> collections.Counter[tuple[str, str, str]]:
    """Samples of the worker threads' (kind, state, wait channel) until ``supervisor`` exits.

    ``in_process``: the command runs its one worker itself (``--processes 1``).
    """
    seen: collections.Counter[tuple[str, str, str]] = collections.Counter()
    children = f"/proc/{supervisor.pid}/task/{supervisor.pid}/children"
    while supervisor.poll() is None:
        try:
            with open(children) as f:
                workers = [str(supervisor.pid)] if in_process else f.read().split()
        except OSError:
            break
        for pid in workers:
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError:
                continue
            for tid in tids:
                try:
                    with open(f"/proc/{pid}/task/{tid}/stat") as f:
                        state = f.read().rpartition(")")[2].split()[0]
                    with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                        channel = f.read().strip() if state != "R" else ""
                except OSError:  # the thread or process ended meanwhile
                    continue
                seen["main" if tid == pid else "thread", state, channel] += 1
        time.sleep(0.0005)
    return seen


def main() -> None:
    """Drain once and print the samples, most frequent first."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="/var/tmp", help="where the spool goes")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--durable", action="store_true")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="wait-channels-", dir=args.dir)
    env = {
        **os.environ,
        "JOBQ_SPOOL": os.path.join(work, "spool"),
        "JOBQ_DURABLE": "1" if args.durable else "0",
        "PYTHONPATH": HERE,
    }
    try:
        subprocess.run(
            [sys.executable, "-c", "import public_jobq; public_jobq.main()", "enqueue",
             str(args.jobs)],
            env=env, check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        command = [os.path.join(BIN, "jobq"), "worker", "public_jobq", "--burst",
                   "--processes", str(args.processes)]  # fmt: skip
        with subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        ) as supervisor:
            seen = sample(supervisor, in_process=args.processes == 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| thread | state | wait channel | samples |")
    print("|---|---|---|---|")
    for (kind, state, channel), count in seen.most_common(12):
        print(f"| {kind} | {state} | {channel or '-'} | {count:,} |")


if __name__ == "__main__":
    main()
