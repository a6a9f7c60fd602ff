"""The dashboard over a spool with many records: how long its pages and endpoints take.

    python benchmarks/dashboard_bench.py [--records 1000000] [--pending 10000] [--dir /tmp]
                                         [--keep SPOOL]

Writes ``--records`` small done records into ``done/default/`` and ``--pending`` job files into
``queues/default/pending/``, straight into the documented layout (docs/spool-format.md), then
times each request through Starlette's TestClient (in-process, so this is the server's own
work: listing, sorting, reading, rendering) and prints, of five runs, the median and best wall
time and the median CPU time. A speed check, not a test: it asserts only that every request
succeeds.
``--keep SPOOL`` keeps the spool at SPOOL (and reuses it when it is already there).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import tempfile
import time

import orjson
from starlette.testclient import TestClient

import jobq
from jobq.dashboard import create_app
from jobq.inspect import spool_stats

FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def job_id(ms: int) -> str:
    """An id like jobq's: 11 hex digits of milliseconds, then 10 random hex digits."""
    return f"{ms:011x}{secrets.token_hex(5)}"


def write(path: str, data: bytes) -> None:
    fd = os.open(path, FLAGS, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def create_spool(spool: str, records: int, pending: int) -> None:
    """A spool of ``records`` done records and ``pending`` pending jobs in queue default."""
    jobq.Spool(spool).dir.ensure_queue("default")
    done = os.path.join(spool, "done", "default")
    waiting = os.path.join(spool, "queues", "default", "pending")
    start = time.time() - records / 1000
    for i in range(records):
        at = start + i / 1000
        ident = job_id(int(at * 1000))
        record = {
            "format": 1, "id": ident, "name": "bench.add" if i % 100 else "bench.report",
            "queue": "default", "args": [i, 1], "kwargs": {}, "enqueued_at": at,
            "state": "done", "attempts": 1, "started_at": at, "finished_at": at + 0.001,
            "result": i + 1, "error": None, "worker": "bench.1.x",
        }  # fmt: skip
        write(os.path.join(done, f"{ident}.json"), orjson.dumps(record))
    for i in range(pending):
        at = time.time()
        ident = job_id(int(at * 1000))
        job = {"format": 1, "id": ident, "name": "bench.add", "args": [i, 1], "enqueued_at": at}
        name = f"10000-{int(at * 1e6):016d}-{ident}-0.json"  # priority 0, never started
        write(os.path.join(waiting, name), orjson.dumps(job))


def timings(client: TestClient, url: str, runs: int = 5) -> tuple[float, float, float]:
    """The median and best wall time, and the median CPU time, of ``runs`` GETs of ``url``.

    CPU time (of this process, where the TestClient runs the app) is the steadier figure on a
    machine that is busy with other work.
    """
    took, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        took.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(took), min(took), statistics.median(cpu)


def main() -> None:
    """Create the spool, time the requests, print a table, remove the spool."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--keep", metavar="SPOOL", default=None)
    args = parser.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="dashboard-bench-", dir=args.dir)
    spool = args.keep or os.path.join(work, "spool")
    middle = args.records // 2
    urls = [
        ("overview", "/"),
        ("overview refresh fragment", "/fragments/overview"),
        ("jobs: done, first page", "/jobs?state=done"),
        ("jobs: done, page 2", "/jobs?state=done&offset=50"),
        (f"jobs: done, offset {middle:,}", f"/jobs?state=done&offset={middle}"),
        ("jobs: pending, first page", "/jobs?state=pending"),
        ("jobs: search by name (one scan budget)", "/jobs?state=done&q=bench.report"),
        ("one job", None),
        ("/api/status", "/api/status"),
        ("/metrics", "/metrics"),
    ]
    try:
        start = time.perf_counter()
        origin = "reused"
        if not os.path.exists(os.path.join(spool, "done", "default")):
            create_spool(spool, args.records, args.pending)
            origin = f"made in {time.perf_counter() - start:.0f} s"
        names = sorted(os.listdir(os.path.join(spool, "done", "default")))
        any_id = names[len(names) // 2][:-5]
        took, cpu = [], []
        for _ in range(5):
            start, start_cpu = time.perf_counter(), time.process_time()
            spool_stats(jobq.Spool(spool).dir)
            took.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        pending = len(os.listdir(os.path.join(spool, "queues", "default", "pending")))
        print(f"{len(names):,} done records + {pending:,} pending ({origin})")
        print(f"{'':<42} {'median':>8} {'best':>8} {'cpu':>8}")
        label = "inspect.spool_stats (= jobq status --json)"
        row = (statistics.median(took), min(took), statistics.median(cpu))
        print(f"{label:<42} {row[0]:7.3f}s {row[1]:7.3f}s {row[2]:7.3f}s")
        with TestClient(create_app(spool)) as client:
            for label, url in urls:
                median, best, used = timings(client, url or f"/jobs/{any_id}")
                print(f"{label:<42} {median:7.3f}s {best:7.3f}s {used:7.3f}s")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
