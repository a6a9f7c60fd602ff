"""``jobq bench``: measure what a spool's filesystem gives jobq, before trusting it.

Everything runs in a fresh hidden directory inside the spool (``.bench-XXXXXX``, removed at
the end), on the same filesystem as the real jobs, with a no-op job:

1. enqueue/s: one job per ``await enqueue()`` and batches of ``BATCH`` (``enqueue_many``),
   durable and not;
2. processing jobs/s: ``count`` queued jobs drained by ``processes`` real ``jobq worker``
   processes, timed from when every worker has registered to when nothing is left;
3. latency with an idle worker: pickup (enqueue called → job starts) and round trip
   (enqueue called → ``result()`` returns), p50 and p99.

Run it on an NFS mount before trusting one: the numbers there are the ones that matter.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext, suppress
from typing import TYPE_CHECKING, Any

import anyio
import click

from jobq import layout as L
from jobq.api import JobFunction, JobOptions
from jobq.decorator import Spool, job
from jobq.errors import JobqError, SpoolError
from jobq.waiting import events_enabled, filesystem_type, local_filesystem

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ("BATCH", "CONCURRENCY", "print_report", "run")

#: Jobs per ``enqueue_many`` call in the batched enqueue measurement.
BATCH = 100
#: ``--concurrency`` of the benchmark's workers.
CONCURRENCY = 64
_QUEUE = "default"
_START_TIMEOUT = 60.0


@job(name="jobq.bench.noop")
async def noop() -> float:
    """The benchmark's job: does nothing and says when it started (for pickup latency)."""
    return time.time()


class _Progress:
    """A click progress bar on stderr, or nothing."""

    def __init__(self, bar: Any) -> None:
        self._bar = bar

    def step(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)


def run(root: str, count: int, durable: bool, processes: int, *, progress: bool) -> dict[str, Any]:
    """Run the benchmark in a temporary directory inside the spool ``root``.

    Args:
        root: the spool directory (created if missing).
        count: jobs per measurement.
        durable: whether the processing and latency runs fsync (enqueue is measured both ways).
        processes: worker processes for the processing and latency runs.
        progress: show a progress bar on stderr.

    Returns:
        The measurements (see docs/performance.md for the keys).

    Raises:
        JobqError: if the workers cannot be started.
    """
    samples = max(20, min(500, count // 4))
    total = 4 * count + count + samples
    started = time.perf_counter()
    with (
        _scratch(root) as scratch,
        click.progressbar(length=total, label="jobq bench", file=sys.stderr)
        if progress
        else nullcontext() as bar,
    ):
        tick = _Progress(bar)
        enqueue = anyio.run(_enqueue_rates, scratch, count, tick)
        anyio.run(_fill, scratch, count, durable)  # queued before any worker starts
        with _workers(scratch, durable, processes) as workers:
            jobs_per_s = _processing(scratch, count, processes, workers, tick)
            latency = anyio.run(_latency, scratch, durable, samples, tick)
        wakeups = _wakeups(scratch)
    return {
        "spool": os.path.abspath(root),
        "filesystem": filesystem_type(root) or "unknown",
        "wakeups": wakeups,
        "jobs": count,
        "durable": durable,
        "processes": processes,
        "concurrency": CONCURRENCY,
        "batch": BATCH,
        "enqueue_per_s": enqueue,
        "jobs_per_s": jobs_per_s,
        "latency_ms": latency,
        "seconds": round(time.perf_counter() - started, 3),
    }


def print_report(results: dict[str, Any]) -> None:
    """Print the measurements as a short human report."""
    enq = results["enqueue_per_s"]
    lat = results["latency_ms"]
    mode = "durable" if results["durable"] else "non-durable"
    lines = [
        f"spool        {results['spool']} ({results['filesystem']}, wake-ups: "
        f"{results['wakeups']})",
        f"enqueue      durable: {enq['single_durable']:,.0f}/s one at a time, "
        f"{enq['batched_durable']:,.0f}/s in batches of {results['batch']}",
        f"             non-durable: {enq['single_non_durable']:,.0f}/s one at a time, "
        f"{enq['batched_non_durable']:,.0f}/s in batches",
        f"processing   {results['jobs_per_s']:,.0f} jobs/s ({mode}, {results['processes']} "
        f"worker process(es), {results['jobs']} jobs)",
        f"pickup       p50 {lat['pickup_p50']:.2f} ms, p99 {lat['pickup_p99']:.2f} ms",
        f"round trip   p50 {lat['round_trip_p50']:.2f} ms, p99 {lat['round_trip_p99']:.2f} ms "
        f"({lat['samples']} jobs, enqueue to result())",
    ]
    click.echo("\n".join(lines))


# -- set-up ---------------------------------------------------------------------------------


@contextmanager
def _scratch(root: str) -> Iterator[str]:
    """A fresh hidden directory inside the spool, removed afterwards (with the spool itself
    if the benchmark created it)."""
    created = not os.path.exists(root)
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        scratch = tempfile.mkdtemp(prefix=".bench-", dir=root)
    except OSError as exc:  # read-only, full, or not ours: say so in one line
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise SpoolError(exc.errno or 0, f"cannot benchmark the spool at {root}: {reason}") from exc
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if created:
            shutil.rmtree(root, ignore_errors=True)


def _bound(scratch: str, durable: bool, queue: str = _QUEUE) -> JobFunction[[], Any, float]:
    """The no-op job, enqueueing into ``queue`` of the scratch spool."""
    options = JobOptions(queue=queue)
    return JobFunction(noop.func, noop.spec, Spool(scratch, durable=durable), options)


def _wakeups(scratch: str) -> str:
    if not events_enabled():
        return "polling"
    return "inotify" if local_filesystem(scratch) else "inotify+polling"


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else float("inf")


# -- 1. enqueue -----------------------------------------------------------------------------


async def _enqueue_rates(scratch: str, count: int, tick: _Progress) -> dict[str, float]:
    # Each measurement fills its own queue, which no worker serves; nothing is deleted until
    # the end, because deleting thousands of files slows the next creations on some
    # filesystems (ext4 without a journal skips recently freed inodes: docs/performance.md).
    rates: dict[str, float] = {}
    for durable in (True, False):
        suffix = "durable" if durable else "non_durable"
        fn = _bound(scratch, durable, f"bench-single-{suffix}".replace("_", "-"))
        start = time.perf_counter()
        for _ in range(count):
            await fn.enqueue()
            tick.step()
        rates[f"single_{suffix}"] = _rate(count, time.perf_counter() - start)
        fn = _bound(scratch, durable, f"bench-batched-{suffix}".replace("_", "-"))
        start = time.perf_counter()
        for first in range(0, count, BATCH):
            n = min(BATCH, count - first)
            await fn.enqueue_many([()] * n)
            tick.step(n)
        rates[f"batched_{suffix}"] = _rate(count, time.perf_counter() - start)
    return rates


# -- 2. processing --------------------------------------------------------------------------


@contextmanager
def _workers(scratch: str, durable: bool, processes: int) -> Iterator[subprocess.Popen[bytes]]:
    """Real ``jobq worker`` processes on the scratch spool; stopped (SIGTERM) afterwards."""
    command = [
        sys.executable, "-m", "jobq", "worker", "jobq.bench", "--spool", scratch,
        "--queues", _QUEUE, "--concurrency", str(CONCURRENCY), "--processes", str(processes),
        "--durable" if durable else "--no-durable", "--grace", "5",
    ]  # fmt: skip
    log = open(os.path.join(scratch, "workers.log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    try:
        yield proc
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
    # The supervisor's children share its session; make sure none outlives the benchmark.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _wait_registered(scratch: str, processes: int, proc: subprocess.Popen[bytes]) -> None:
    directory = os.path.join(scratch, L.WORKERS)
    deadline = time.monotonic() + _START_TIMEOUT
    while len(os.listdir(directory)) < processes:
        if proc.poll() is not None or time.monotonic() > deadline:
            with open(os.path.join(scratch, "workers.log"), "rb") as f:
                tail = f.read().decode(errors="replace").strip().splitlines()[-3:]
            raise JobqError("the benchmark's workers did not start: " + " | ".join(tail))
        time.sleep(0.002)


def _left(scratch: str) -> int:
    """Jobs not finished yet: pending plus held by a worker."""
    left = len(os.listdir(os.path.join(scratch, L.QUEUES, _QUEUE, L.PENDING)))
    running = os.path.join(scratch, L.RUNNING)
    for worker in os.listdir(running):
        try:
            left += len(os.listdir(os.path.join(running, worker)))
        except FileNotFoundError:
            continue
    return left


async def _fill(scratch: str, count: int, durable: bool) -> None:
    fn = _bound(scratch, durable)
    for first in range(0, count, 1000):
        await fn.enqueue_many([()] * min(1000, count - first))


def _processing(
    scratch: str, count: int, processes: int, proc: subprocess.Popen[bytes], tick: _Progress
) -> float:
    """Time the workers draining the queued jobs, from when they all have registered."""
    _wait_registered(scratch, processes, proc)
    start = time.perf_counter()
    reported = 0
    while True:
        look = time.perf_counter()
        left = _left(scratch)
        now = time.perf_counter()
        tick.step(count - left - reported)
        reported = count - left
        if not left:
            break
        if proc.poll() is not None:
            raise JobqError("the benchmark's workers exited early (see their log)")
        # Counting costs CPU the workers want: look less often while much is left.
        time.sleep(max(0.005, 10 * (now - look)))
    elapsed = now - start
    done = len(os.listdir(os.path.join(scratch, L.DONE, _QUEUE)))
    if done < count:
        raise JobqError(f"only {done} of {count} benchmark jobs were recorded as done")
    return _rate(count, elapsed)


# -- 3. latency -----------------------------------------------------------------------------


async def _latency(scratch: str, durable: bool, samples: int, tick: _Progress) -> dict[str, Any]:
    fn = _bound(scratch, durable)
    pickups: list[float] = []
    trips: list[float] = []
    for i in range(samples + 5):
        await anyio.sleep(0.002)  # let the worker go idle: this measures waking it up
        wall = time.time()
        start = time.perf_counter()
        handle = await fn.enqueue()
        began = await handle.result(timeout=30)
        trip = time.perf_counter() - start
        if i >= 5:  # the first few warm up caches
            pickups.append(began - wall)
            trips.append(trip)
            tick.step()
    return {
        "pickup_p50": _ms(_quantile(pickups, 0.5)),
        "pickup_p99": _ms(_quantile(pickups, 0.99)),
        "round_trip_p50": _ms(_quantile(trips, 0.5)),
        "round_trip_p99": _ms(_quantile(trips, 0.99)),
        "samples": samples,
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ms(seconds: float) -> float:
    return round(max(seconds, 0.0) * 1000, 3)
