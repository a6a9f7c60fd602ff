"""Cost per job on a shared GlusterFS volume: this tree against a baseline commit, one run.

Builds the private cluster of ``tests/hosts/cluster.py`` (root only: network namespaces, one
brick, one FUSE mount per host), then for ``--rounds`` rounds, alternating which goes first,
runs the same workload with this tree's jobq and with the baseline's: ``--jobs`` no-op jobs
enqueued from host 1 (``enqueue_many``), then one ``jobq worker`` per host started at once;
the time from their start to the last outcome record gives jobs/s. The brick counts every
filesystem operation it serves (``gluster volume profile``), so each run also reports the
operations per job by kind (LOOKUP, CREATE, RENAME, READDIRP, FSYNC, ...): what each job costs
the network and the server, whatever the client caches.

    sudo .venv/bin/python benchmarks/hosts_bench.py [--baseline REF] [--jobs 1500]
        [--rounds 3] [--hosts 3] [--no-durable] [--client-arg=--acl]

The baseline is checked out with ``git worktree`` and imported through ``PYTHONPATH`` by the
same interpreter, so both sides share every dependency.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "hosts"))

from cluster import Cluster  # noqa: E402

BENCH = Path(__file__).resolve().parent
ENQUEUE = """
import os, sys, anyio, peer_jobq
os.environ["JOBQ_SPOOL"], n = sys.argv[1], int(sys.argv[2])
async def main():
    for start in range(0, n, 500):
        await peer_jobq.noop.enqueue_many([()] * min(500, n - start))
anyio.run(main)
"""


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[Path]:
    """The baseline's source tree, checked out from this repository at ``ref``."""
    where = Path("/tmp/jobq-hosts-bench-baseline")
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
                   capture_output=True, check=False)  # fmt: skip
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), ref],
                   capture_output=True, check=True)  # fmt: skip
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
                       capture_output=True, check=False)  # fmt: skip


def profile_counts(cluster: Cluster) -> dict[str, int]:
    """Calls per operation the brick served since the last call (``profile info incremental``)."""
    out = cluster.gluster("volume", "profile", cluster.volume, "info", "incremental")
    counts: dict[str, int] = {}
    for line in out.splitlines():
        # "     44.94   51487.33 ns   26482.00 ns   73416.00 ns              3      LOOKUP"
        m = re.match(r"\s*[\d.]+(?:\s+[\d.]+ [nu]s){3}\s+(\d+)\s+([A-Z]+)\s*$", line)
        if m:
            counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(1))
    return counts


def one_run(
    cluster: Cluster, pythonpath: str, tag: str, jobs: int, durable: bool
) -> tuple[float, dict[str, int]]:
    """Enqueue, then run ``jobs`` jobs with one worker per host; (jobs/s, ops per kind)."""
    name = f"spool-{tag}-{time.monotonic_ns()}"
    env = {"PYTHONPATH": os.pathsep.join(p for p in (pythonpath, str(BENCH)) if p)}
    spool1 = cluster.mount(1) / name
    done = cluster.call(1, [sys.executable, "-c", ENQUEUE, str(spool1), str(jobs)], env,
                        cwd=BENCH, timeout=600)  # fmt: skip
    if done.returncode:
        raise RuntimeError(f"enqueue failed: {done.stderr.strip()}")
    profile_counts(cluster)  # start the interval here: the enqueue is not counted
    flags = [] if durable else ["--no-durable"]
    command = [sys.executable, "-m", "jobq", "worker", "peer_jobq", "--concurrency", "10",
               "--log-level", "WARNING", *flags]  # fmt: skip
    workers = []
    for i in cluster.hosts:
        spool_i = str(cluster.mount(i) / name)
        out = subprocess.DEVNULL
        workers.append(cluster.run_in_host(i, [*command, "--spool", spool_i], env, cwd=BENCH,
                                           stdout=out, stderr=out))  # fmt: skip
    start = time.monotonic()
    records = spool1 / "done" / "default"
    try:
        while not records.is_dir() or len(os.listdir(records)) < jobs:
            if time.monotonic() - start > 900:
                raise RuntimeError(f"{tag}: not done after 900 s")
            if any(w.poll() is not None for w in workers):
                raise RuntimeError(f"{tag}: a worker exited")
            time.sleep(0.2)
        elapsed = time.monotonic() - start
    finally:
        for w in workers:
            with contextlib.suppress(ProcessLookupError):
                w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.kill()
    counts = profile_counts(cluster)
    shutil.rmtree(spool1, ignore_errors=True)
    return jobs / elapsed, counts


def main() -> None:
    """Parse arguments, run the rounds, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="2c85514", help="git ref to compare with")
    parser.add_argument("--jobs", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--no-durable", dest="durable", action="store_false")
    parser.add_argument("--client-arg", action="append", default=[], dest="client_args",
                        help="an argument for every FUSE client, e.g. --acl")  # fmt: skip
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"baseline": [], "current": []}
    ops: dict[str, list[dict[str, int]]] = {"baseline": [], "current": []}
    with (
        baseline_tree(args.baseline) as old,
        Cluster.start(args.hosts, client_args=args.client_args) as cluster,
    ):
        cluster.gluster("volume", "profile", cluster.volume, "start")
        sides = {"baseline": str(old), "current": str(ROOT)}
        for r in range(args.rounds):
            order = ["baseline", "current"] if r % 2 == 0 else ["current", "baseline"]
            for side in order:
                rate, counts = one_run(cluster, sides[side], side, args.jobs, args.durable)
                rates[side].append(rate)
                ops[side].append(counts)
                print(f"round {r + 1} {side}: {rate:.0f} jobs/s", flush=True)
    mode = "durable" if args.durable else "--no-durable"
    mount = " ".join(args.client_args) or "default"
    print(f"\n{args.hosts} hosts, {args.jobs} jobs, {mode}, client options: {mount}, "
          f"median of {args.rounds} rounds")  # fmt: skip
    med = {side: statistics.median(v) for side, v in rates.items()}
    print(f"| | baseline {args.baseline} | current | ratio |\n|---|---|---|---|")
    print(f"| jobs/s | {med['baseline']:.0f} | {med['current']:.0f} | "
          f"{med['current'] / med['baseline']:.2f}x |")  # fmt: skip
    kinds = sorted({k for side in ops.values() for c in side for k in c})
    total = dict.fromkeys(ops, 0.0)
    for kind in kinds:
        per = {
            side: statistics.median(c.get(kind, 0) for c in ops[side]) / args.jobs for side in ops
        }
        for side in ops:
            total[side] += per[side]
        if max(per.values()) >= 0.05:
            print(f"| {kind} per job | {per['baseline']:.2f} | {per['current']:.2f} | |")
    print(f"| all operations per job | {total['baseline']:.1f} | {total['current']:.1f} | "
          f"{total['baseline'] / max(total['current'], 1e-9):.2f}x fewer |")  # fmt: skip


if __name__ == "__main__":
    main()
