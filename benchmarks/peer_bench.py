"""Peer benchmark: the same no-op workload through jobq and through Huey, in one run.

Each metric runs jobq and its Huey counterpart back to back, alternating which goes first,
for ``--rounds`` rounds; the report gives each side's median and the jobq/Huey ratio (for
times, Huey/jobq, so that above 1 always means jobq is better). Everything runs on the
filesystem of ``--dir`` (default: the system temp directory) with real worker processes:
``jobq worker --processes N`` and ``huey_consumer -w N -k process``.

    pip install -r benchmarks/requirements.txt
    python benchmarks/peer_bench.py [--jobs 3000] [--rounds 3] [--processes 2]

Processing rates are timed from the first recorded result to the last, so process start-up
(importing Python) counts for neither side. The jobq job is an ``async def`` and the Huey
task a plain function: each system's natural no-op.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import IO, TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
BATCH = 100
sys.path.insert(0, HERE)

import peer_jobq  # noqa: E402

import jobq  # noqa: E402

# -- process management -----------------------------------------------------------------------


@contextlib.contextmanager
def started(
    command: list[str], env: dict[str, str], stop: int, output: int | IO[bytes] = subprocess.DEVNULL
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` in its own session; on exit send ``stop``, then kill what is left.

    Its stdout and stderr both go to ``output`` (default: discarded).
    """
    proc = subprocess.Popen(
        command, cwd=HERE, env=env, start_new_session=True, stdout=output, stderr=output,
    )  # fmt: skip
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, env.get("PYTHONPATH")) if p)
    return env


def jobq_workers(spool: str, processes: int, durable: bool) -> Any:
    command = [
        os.path.join(BIN, "jobq"), "worker", "peer_jobq", "--spool", spool,
        "--processes", str(processes), "--concurrency", "64",
        "--durable" if durable else "--no-durable",
    ]  # fmt: skip
    return started(command, env_with(), signal.SIGTERM)


def huey_consumer(kind: str, path: str, processes: int) -> Any:
    command = [
        os.path.join(BIN, "huey_consumer"), "peer_huey.huey", "-w", str(processes),
        "-k", "process", "-C",
    ]  # fmt: skip
    # SIGINT is Huey's graceful stop; SIGTERM its immediate one.
    return started(command, env_with(PEER_HUEY=kind, PEER_HUEY_PATH=path), signal.SIGINT)


def huey_module(kind: str, path: str) -> Any:
    """``peer_huey`` imported afresh for one storage (its Huey is built at import)."""
    os.environ["PEER_HUEY"] = kind
    os.environ["PEER_HUEY_PATH"] = path
    if "peer_huey" in sys.modules:
        return importlib.reload(sys.modules["peer_huey"])
    return importlib.import_module("peer_huey")


# -- measurements -------------------------------------------------------------------------------


def drain_rate(proc: subprocess.Popen[bytes], completed: Callable[[], int], n: int) -> float:
    """Jobs/s between the first and the last completion seen (the same clock for both)."""
    deadline = time.monotonic() + 300
    while (first := completed()) == 0:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the consumer/worker did not start")
        time.sleep(0.001)
    start = time.perf_counter()
    done = first
    while done < n:
        time.sleep(0.005)
        done = completed()
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"stalled at {done}/{n}")
    return (n - first) / (time.perf_counter() - start)


def jobq_fill(spool: str, n: int, durable: bool, single: bool = False) -> float:
    """Enqueue ``n`` no-op jobs; returns jobs/s."""
    jobq.configure(spool=spool, durable=durable)

    async def fill() -> float:
        begin = time.perf_counter()
        if single:
            for _ in range(n):
                await peer_jobq.noop.enqueue()
        else:
            for first in range(0, n, BATCH):
                await peer_jobq.noop.enqueue_many([()] * min(BATCH, n - first))
        return n / (time.perf_counter() - begin)

    return anyio.run(fill)


def huey_fill(mod: Any, n: int) -> float:
    begin = time.perf_counter()
    for _ in range(n):
        mod.noop()
    return n / (time.perf_counter() - begin)


def jobq_processing(work: str, n: int, processes: int, durable: bool) -> float:
    spool = fresh(work, "jobq")
    jobq_fill(spool, n, durable=False)  # how the queue was filled does not matter here
    done_dir = os.path.join(spool, "done", "default")
    with jobq_workers(spool, processes, durable) as proc:
        return drain_rate(proc, lambda: len(os.listdir(done_dir)), n)


def huey_processing(work: str, n: int, processes: int, kind: str) -> float:
    path = huey_path(work, kind)
    mod = huey_module(kind, path)
    huey_fill(mod, n)
    storage = mod.huey.storage
    with huey_consumer(kind, path, processes) as proc:
        return drain_rate(proc, storage.result_store_size, n)


def jobq_round_trip(work: str, samples: int, processes: int) -> float:
    spool = fresh(work, "jobq")
    jobq.configure(spool=spool, durable=True)

    async def trips() -> list[float]:
        took = []
        await peer_jobq.noop.enqueue()  # creates the queue's directories
        for _ in range(samples + 3):
            await anyio.sleep(0.002)
            begin = time.perf_counter()
            handle = await peer_jobq.noop.enqueue()
            await handle.result(timeout=60)
            took.append(time.perf_counter() - begin)
        return took[3:]

    with jobq_workers(spool, processes, durable=True) as proc:
        wait_registered(spool, processes, proc)
        return statistics.median(anyio.run(trips)) * 1000


def huey_round_trip(work: str, samples: int, processes: int) -> float:
    path = huey_path(work, "sqlite")
    mod = huey_module("sqlite", path)
    took = []
    with huey_consumer("sqlite", path, processes):
        mod.noop().get(blocking=True, timeout=60)  # consumer up
        for _ in range(samples + 3):
            time.sleep(0.002)
            begin = time.perf_counter()
            mod.noop().get(blocking=True, timeout=60)
            took.append(time.perf_counter() - begin)
    return statistics.median(took[3:]) * 1000


def wait_registered(spool: str, processes: int, proc: subprocess.Popen[bytes]) -> None:
    workers = os.path.join(spool, "workers")
    while not os.path.isdir(workers) or len(os.listdir(workers)) < processes:
        if proc.poll() is not None:
            raise SystemExit("jobq workers did not start")
        time.sleep(0.005)


_counter = [0]


def fresh(work: str, stem: str) -> str:
    _counter[0] += 1
    return os.path.join(work, f"{stem}-{_counter[0]}")


def huey_path(work: str, kind: str) -> str:
    path = fresh(work, f"huey-{kind}")
    return path if kind == "file" else path + ".db"


# -- the run ------------------------------------------------------------------------------------


def metrics(n: int, processes: int, samples: int) -> list[tuple[str, str, Any, Any]]:
    """(metric, unit, jobq measurement, Huey measurement); each takes the work directory."""
    return [
        ("durable processing vs SqliteHuey (default, fsync on)", "jobs/s",
         lambda w: jobq_processing(w, n, processes, durable=True),
         lambda w: huey_processing(w, n, processes, "sqlite")),
        ("non-durable processing vs SqliteHuey(fsync=False)", "jobs/s",
         lambda w: jobq_processing(w, n, processes, durable=False),
         lambda w: huey_processing(w, n, processes, "sqlite-nofsync")),
        ("non-durable processing vs FileHuey", "jobs/s",
         lambda w: jobq_processing(w, n, processes, durable=False),
         lambda w: huey_processing(w, n, processes, "file")),
        ("durable batched enqueue (enqueue_many) vs SqliteHuey enqueue", "jobs/s",
         lambda w: jobq_fill(fresh(w, "jobq"), n, durable=True),
         lambda w: huey_fill(huey_module("sqlite", huey_path(w, "sqlite")), n)),
        ("durable single enqueue vs SqliteHuey enqueue", "jobs/s",
         lambda w: jobq_fill(fresh(w, "jobq"), n, durable=True, single=True),
         lambda w: huey_fill(huey_module("sqlite", huey_path(w, "sqlite")), n)),
        ("round trip p50 (enqueue -> result) vs SqliteHuey", "ms",
         lambda w: jobq_round_trip(w, samples, processes),
         lambda w: huey_round_trip(w, max(10, samples // 10), processes)),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--samples", type=int, default=200, help="round trips for jobq")
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="peer-bench-", dir=args.dir)
    started_at = time.perf_counter()
    table = metrics(args.jobs, args.processes, args.samples)
    results: dict[str, tuple[list[float], list[float]]] = {m[0]: ([], []) for m in table}
    try:
        for round_no in range(args.rounds):
            for name, unit, ours, theirs in table:
                order = [(0, ours), (1, theirs)]
                for side, measure in order if round_no % 2 == 0 else order[::-1]:
                    # Each run gets fresh directories; nothing is deleted until the end, as
                    # mass deletion slows the next file creations (see docs/performance.md).
                    results[name][side].append(measure(work))
                jq, hu = results[name][0][-1], results[name][1][-1]
                print(f"round {round_no + 1}: {name}: jobq {jq:,.2f} / huey {hu:,.2f} {unit}",
                      file=sys.stderr, flush=True)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, table, results, time.perf_counter() - started_at)


def report(
    args: argparse.Namespace,
    table: list[tuple[str, str, Any, Any]],
    results: dict[str, tuple[list[float], list[float]]],
    seconds: float,
) -> None:
    import huey

    print(f"peer benchmark {time.strftime('%Y-%m-%d %H:%M')}  python {platform.python_version()}"
          f"  huey {huey.__version__}  cpus {os.cpu_count()}  dir {args.dir}")  # fmt: skip
    print(f"jobs {args.jobs}  rounds {args.rounds}  processes {args.processes}  "
          f"({seconds:.0f} s)")  # fmt: skip
    print(f"{'metric':<66} {'jobq':>10} {'huey':>10} {'ratio':>7}")
    for name, unit, _, _ in table:
        ours = statistics.median(results[name][0])
        theirs = statistics.median(results[name][1])
        ratio = theirs / ours if unit == "ms" else ours / theirs
        print(f"{name + ' (' + unit + ')':<66} {ours:>10,.2f} {theirs:>10,.2f} {ratio:>6.2f}x")


if __name__ == "__main__":
    main()
