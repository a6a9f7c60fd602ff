"""Two revisions of jobq side by side: single enqueues, and a worker draining a queue.

Each revision is checked out with ``git worktree`` into a temporary directory and
byte-compiled; every measurement runs in a fresh interpreter whose ``PYTHONPATH`` puts that
checkout first, alternating the revisions and reversing their order every other round. The
report gives medians and the second revision's ratio to the first:

- ``enqueue``: µs per ``await job.enqueue()`` (non-durable) on asyncio and on trio, in a loop
  of ``--enqueues`` calls on a fresh spool;
- ``drain``: ``--jobs`` jobs enqueued with no worker running, then ``jobq worker --burst
  --processes P`` started; jobs/s from the start to the last job's printed finish, and CPU µs
  per job of the worker processes (user + system). Its stdout and stderr go to files in
  ``--dir``, as a service's journal would take them;
- ``tasks`` (only with ``--measure``): durable ``await job.enqueue()`` from N tasks of one
  asyncio loop at once, for each N of ``--tasks``, ``--durable-enqueues`` in all: jobs/s.

Spools are made in ``--dir`` (tmpfs keeps the disk out of the figures; a disk shows what it
adds) and removed after each run, outside the timed part.

    python benchmarks/revisions.py b930074 HEAD [--rounds 4] [--dir /dev/shm]
        [--jobs 20000] [--processes 2] [--durable] [--measure enqueue,drain,tasks]
        [--tasks 1,8,64] [--durable-enqueues 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FINISHED = re.compile(r"finished (\d+\.\d+)")

APP = """
import time
import jobq


@jobq.job(name="revisions.tick")
async def tick() -> None:
    print(f"finished {time.time():.6f}", flush=True)
"""

PRODUCER = """
import sys, time, anyio, revisions_app

async def loop(n):
    begin = time.perf_counter()
    for _ in range(n):
        await revisions_app.tick.enqueue()
    return time.perf_counter() - begin

async def together(n, tasks):
    async def some():
        for _ in range(n // tasks):
            await revisions_app.tick.enqueue()

    begin = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(tasks):
            tg.start_soon(some)
    return time.perf_counter() - begin

what, n = sys.argv[1], int(sys.argv[2])
if what == "fill":
    anyio.run(loop, n)
elif what.startswith("tasks="):
    tasks = int(what[len("tasks="):])
    anyio.run(loop, 1)  # creates the queue's directories
    print(n // tasks * tasks / anyio.run(together, n, tasks))
else:
    anyio.run(loop, 1)  # creates the queue's directories
    print(anyio.run(loop, n, backend=what) / n * 1e6)
"""


@contextlib.contextmanager
def checkouts(revisions: list[str]) -> Iterator[dict[str, str]]:
    """A byte-compiled worktree per revision, removed at the end."""
    base = tempfile.mkdtemp(prefix="jobq-revisions-")
    trees: dict[str, str] = {}
    try:
        for rev in revisions:
            tree = os.path.join(base, f"{len(trees)}")
            subprocess.run(["git", "-C", REPO, "worktree", "add", "-q", "--detach", tree, rev],
                           check=True)  # fmt: skip
            subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(tree, "jobq")],
                           check=True)  # fmt: skip
            trees[rev] = tree
        with open(os.path.join(base, "revisions_app.py"), "w") as f:
            f.write(APP)
        with open(os.path.join(base, "producer.py"), "w") as f:
            f.write(PRODUCER)
        yield trees
    finally:
        for tree in trees.values():
            subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", tree], check=False)
        shutil.rmtree(base, ignore_errors=True)


def environment(tree: str, spool: str, durable: bool) -> dict[str, str]:
    """The environment of one run: that checkout first on the path, the spool and durability."""
    return {
        **os.environ,
        "PYTHONPATH": f"{tree}:{os.path.dirname(tree)}",
        "JOBQ_SPOOL": spool,
        "JOBQ_DURABLE": "1" if durable else "0",
    }


def enqueue(tree: str, spool: str, backend: str, n: int) -> float:
    """µs per non-durable ``await enqueue()``."""
    env = environment(tree, spool, durable=False)
    here = os.path.dirname(tree)  # not the repository: `python -m jobq` looks in the cwd first
    producer = os.path.join(here, "producer.py")
    done = subprocess.run([sys.executable, producer, backend, str(n)], env=env, cwd=here,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return float(done.stdout.split()[-1])


def together(tree: str, spool: str, tasks: int, n: int) -> float:
    """Jobs/s of durable ``await enqueue()`` from ``tasks`` tasks at once, ``n`` in all."""
    env = environment(tree, spool, durable=True)
    here = os.path.dirname(tree)
    producer = os.path.join(here, "producer.py")
    done = subprocess.run([sys.executable, producer, f"tasks={tasks}", str(n)], env=env,
                          cwd=here, capture_output=True, text=True, check=True)  # fmt: skip
    return float(done.stdout.split()[-1])


def drain(tree: str, spool: str, args: argparse.Namespace) -> tuple[float, float]:
    """Jobs/s and CPU µs per job of ``jobq worker --burst`` draining ``args.jobs`` jobs."""
    env = environment(tree, spool, args.durable)
    here = os.path.dirname(tree)  # not the repository: `python -m jobq` looks in the cwd first
    producer = os.path.join(here, "producer.py")
    subprocess.run(
        [sys.executable, producer, "fill", str(args.jobs)], env=env, cwd=here, check=True
    )
    out, err = os.path.join(args.dir, "drain.out"), os.path.join(args.dir, "drain.err")
    command = [sys.executable, "-m", "jobq", "worker", "revisions_app", "--burst",
               "--processes", str(args.processes)]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.time()
    with open(out, "w") as stdout, open(err, "w") as stderr:
        subprocess.run(command, env=env, cwd=here, stdout=stdout, stderr=stderr, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out) as f:
        last = max(float(t) for t in FINISHED.findall(f.read()))
    os.remove(out)
    os.remove(err)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return args.jobs / (last - started), cpu / args.jobs * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("revisions", nargs=2, help="the baseline and the revision to compare")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--dir", default="/dev/shm", help="where spools and worker output go")
    parser.add_argument("--jobs", type=int, default=20000, help="jobs per drain")
    parser.add_argument("--enqueues", type=int, default=20000, help="enqueues per loop")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--durable", action="store_true", help="drain a durable spool")
    parser.add_argument("--measure", default="enqueue,drain", help="of enqueue, drain, tasks")
    parser.add_argument("--tasks", default="1,8,64", help="task counts of the tasks measure")
    parser.add_argument("--durable-enqueues", type=int, default=2000, help="per tasks run")
    args = parser.parse_args()
    measure = set(args.measure.split(","))
    results: dict[str, dict[str, list[float]]] = {r: {} for r in args.revisions}
    with checkouts(args.revisions) as trees:
        for round_no in range(args.rounds):
            order = args.revisions if round_no % 2 == 0 else args.revisions[::-1]
            for rev in order:
                got = results[rev]
                for backend in ("asyncio", "trio") if "enqueue" in measure else ():
                    spool = tempfile.mkdtemp(prefix="spool-", dir=args.dir)
                    got.setdefault(f"enqueue {backend} µs", []).append(
                        enqueue(trees[rev], spool, backend, args.enqueues)
                    )
                    shutil.rmtree(spool)
                for tasks in map(int, args.tasks.split(",")) if "tasks" in measure else ():
                    spool = tempfile.mkdtemp(prefix="spool-", dir=args.dir)
                    got.setdefault(f"durable enqueue, {tasks} tasks, jobs/s", []).append(
                        together(trees[rev], spool, tasks, args.durable_enqueues)
                    )
                    shutil.rmtree(spool)
                if "drain" in measure:
                    spool = tempfile.mkdtemp(prefix="spool-", dir=args.dir)
                    rate, cpu = drain(trees[rev], spool, args)
                    shutil.rmtree(spool)
                    got.setdefault("drain jobs/s", []).append(rate)
                    got.setdefault("drain CPU µs/job", []).append(cpu)
                print(f"round {round_no + 1}: {rev}: " + ", ".join(
                    f"{k} {v[-1]:,.1f}" for k, v in got.items()), flush=True)  # fmt: skip
    old, new = args.revisions
    print(f"\n| median of {args.rounds} rounds, {args.dir} | {old} | {new} | ratio |")
    print("|---|---|---|---|")
    for metric in results[old]:
        a, b = statistics.median(results[old][metric]), statistics.median(results[new][metric])
        print(f"| {metric} | {a:,.1f} | {b:,.1f} | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
