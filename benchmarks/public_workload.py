"""The public workload of issue 10: jobq against Huey and Dramatiq on Redis, side by side.

The widely cited comparison of Python job queues runs this workload, reproduced here for each
system:

1. With no worker running, a producer enqueues ``--jobs`` jobs one at a time (each call returns
   before the next). Enqueue rate = jobs / time of that loop (measured inside the producer,
   so its interpreter start-up is not counted).
2. The system's own worker command starts. Every job prints one line with ``time.time()``; the
   worker's stdout and stderr go to a file. Processing rate = jobs / (the latest printed time
   - the wall time just before the worker command was started), so worker start-up counts, as
   in the public comparison. Total = enqueue seconds + processing seconds.

The systems, each on fresh storage (a new spool; a new Redis server):

- jobq durable (default) and ``--no-durable``: ``jobq worker public_jobq --processes 2
  --concurrency 10``, the spool in ``--dir``;
- Huey: ``huey_consumer public_huey.huey -w 10 -k process`` with RedisHuey;
- Dramatiq: ``dramatiq public_dramatiq``, its defaults (one process per CPU, 8 threads each);
- Huey durable: Huey again with Redis run as ``--appendonly yes --appendfsync always``.

Redis is Debian's ``redis-server``, started by this script on a free loopback port with its data
directory in ``--dir`` (so on the same disk as the spool) and no persistence (``--save ""
--appendonly no``) for the non-durable runs; it is stopped by PID after each run.

Before the rounds, jobq and the job modules are byte-compiled, so every system starts from
bytecode as an installed package does (runs before 2026-12-01 compiled jobq at every start).

The same rounds also measure jobq durable ``enqueue_many`` (batches of ``--batch``) and
``enqueue_sync`` (one at a time from sync code, as the peers' producers call); the round
trip p50/p99 against an idle worker (enqueue one job, await its result; ``--samples`` times)
for jobq durable and non-durable; and the raw floors in Python on the same disk (``floors.py``):
O_EXCL create + write + close + rename from ``tmp/`` into ``pending/``, one at a time; the same
with an fsync of the file and of ``pending/``; append + fdatasync of one file (what Redis's
``appendfsync always`` pays per write); and a worker's file operations per job, in
``--processes`` processes at once, non-durable and durable.

Each round runs every measurement in turn, the order reversed every other round; nothing is
deleted until the end (mass deletion slows the next file creations: docs/performance.md). The
report is a markdown table of medians, the issue's ratios (from those medians) and the floors.
Each run also reports its CPU time per job (producer, workers and Redis together), and the run
prints how much CPU other processes and kernel threads used during each measurement: durable
runs cause some themselves (writeback, a loop device, the journal), but seconds of it during a
non-durable run mean something else shared the cores and the numbers are not to be trusted.

    pip install -r benchmarks/requirements.txt      # huey, dramatiq[redis], redis
    apt-get install redis-server
    python benchmarks/public_workload.py [--jobs 20000] [--rounds 3] [--dir /var/tmp]
        [--processes 2] [--concurrency 10] [--only huey,jobq-nd,...]
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import functools
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
FINISHED = re.compile(rb"finished (\d+\.\d+)")

try:
    import redis
    from floors import GROUP, floor_append, floor_process, floor_rename
    from peer_bench import env_with, fresh, started, wait_registered
except ImportError as error:  # pragma: no cover - a missing benchmark dependency
    raise SystemExit(f"{error}: pip install -r benchmarks/requirements.txt") from None


@dataclass(frozen=True)
class System:
    """One side of the comparison: its job module (which names its worker) and durability."""

    label: str
    module: str
    durable: bool


SYSTEMS = {
    "huey": System("Huey, RedisHuey, process consumer, 10 workers", "public_huey", False),
    "dramatiq": System("Dramatiq, Redis broker, defaults", "public_dramatiq", False),
    "jobq-nd": System("jobq `--no-durable`, {p} x {c}", "public_jobq", False),
    "jobq": System("jobq durable (default), {p} x {c}", "public_jobq", True),
    "huey-aof": System("Huey on Redis `appendfsync always` (durable)", "public_huey", True),
}

# -- Redis -------------------------------------------------------------------------------------

PERSISTENCE = {
    False: ("--appendonly", "no"),
    True: ("--appendonly", "yes", "--appendfsync", "always"),
}


def redis_server_binary() -> str:
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(path, os.X_OK):
        raise SystemExit("redis-server not found: apt-get install redis-server")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def redis_server(work: str, durable: bool) -> Iterator[int]:
    """A fresh Redis on loopback, data in ``work``; yields its port, stops it by PID."""
    data = fresh(work, "redis")
    os.makedirs(data)
    port = free_port()
    command = [
        redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", data,
        "--save", "", *PERSISTENCE[durable], "--daemonize", "no", "--logfile", "",
    ]  # fmt: skip
    with open(os.path.join(data, "redis.log"), "wb") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    try:
        check_redis(port, proc, durable)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_redis(port: int, proc: subprocess.Popen[bytes], durable: bool) -> None:
    """Wait until Redis answers, then check it runs with the persistence asked for."""
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"redis-server on port {port} did not start") from None
            time.sleep(0.01)
    config = {**client.config_get("save"), **client.config_get("append*")}
    expected = {"save": "", "appendonly": "yes" if durable else "no"}
    if durable:
        expected["appendfsync"] = "always"
    if any(config.get(key) != value for key, value in expected.items()):
        raise SystemExit(f"redis-server runs with {config}, not {expected}")
    client.close()


# -- the systems' storage, producers and workers -----------------------------------------------


@contextlib.contextmanager
def storage(system: System, work: str) -> Iterator[dict[str, str]]:
    """Fresh storage for one run; yields the environment its producer and worker need."""
    if system.module == "public_jobq":
        spool = fresh(work, "jobq")
        yield env_with(JOBQ_SPOOL=spool, JOBQ_DURABLE="1" if system.durable else "0")
    else:
        with redis_server(work, system.durable) as port:
            yield env_with(PUBLIC_REDIS_PORT=str(port))


def produce(module: str, env: dict[str, str], *args: object) -> dict[str, float]:
    """Run one of ``module``'s producer commands in a fresh interpreter; its JSON answer."""
    command = [sys.executable, "-c", f"import {module}; {module}.main()", *map(str, args)]
    done = subprocess.run(command, cwd=HERE, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"{module} {args[0]} failed: {tail}")
    answer: dict[str, float] = json.loads(done.stdout.splitlines()[-1])
    return answer


def worker(
    system: System, env: dict[str, str], args: argparse.Namespace, output: int | IO[bytes]
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """The system's own worker command, started; stopped (gracefully, then killed) on exit."""
    if system.module == "public_jobq":
        command = [
            os.path.join(BIN, "jobq"), "worker", "public_jobq",
            "--processes", str(args.processes), "--concurrency", str(args.concurrency),
            "--durable" if system.durable else "--no-durable",
        ]  # fmt: skip
        return started(command, env, signal.SIGTERM, output)
    if system.module == "public_huey":
        command = [os.path.join(BIN, "huey_consumer"), "public_huey.huey", "-w", "10", "-k",
                   "process"]  # fmt: skip
        return started(command, env, signal.SIGINT, output)  # SIGINT: Huey's graceful stop
    return started([os.path.join(BIN, "dramatiq"), "public_dramatiq"], env, signal.SIGTERM, output)


def wait_finishes(path: str, proc: subprocess.Popen[bytes], n: int) -> list[float]:
    """The times printed by the jobs into ``path``, once ``n`` of them are there."""
    stamps: list[float] = []
    pending = b""
    deadline = time.monotonic() + 120 + n / 100
    with open(path, "rb") as output:
        while len(stamps) < n:
            chunk = output.read()
            if chunk:
                complete, _, pending = (pending + chunk).rpartition(b"\n")
                stamps.extend(float(stamp) for stamp in FINISHED.findall(complete))
            elif proc.poll() is not None:
                raise SystemExit(f"the worker exited after {len(stamps)}/{n} jobs: see {path}")
            elif time.monotonic() > deadline:
                raise SystemExit(f"stalled at {len(stamps)}/{n} jobs: see {path}")
            else:
                time.sleep(0.02)
    return stamps


# -- measurements: each takes the work directory and returns named numbers ---------------------


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's reaped children and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def workload(system: System, work: str, args: argparse.Namespace) -> dict[str, float]:
    """The public workload once: enqueue with no worker running, then start the workers.

    ``cpu`` is the CPU time per job of every process of the run: producer, workers and Redis.
    """
    cpu = children_cpu()
    with storage(system, work) as env:
        enqueue = produce(system.module, env, "enqueue", args.jobs)["per_s"]
        out = fresh(work, "worker-output")
        with open(out, "ab") as output:
            begin = time.time()
            with worker(system, env, args, output) as proc:
                stamps = wait_finishes(out, proc, args.jobs)
    processing = max(stamps) - begin
    return {
        "enqueue": enqueue,
        "process": args.jobs / processing,
        "total": args.jobs / enqueue + processing,
        "first": min(stamps) - begin,
        "cpu": (children_cpu() - cpu) / args.jobs * 1e6,
    }


def enqueue_many(work: str, args: argparse.Namespace) -> dict[str, float]:
    """jobq durable ``enqueue_many`` in batches of ``--batch``, into a fresh spool."""
    with storage(SYSTEMS["jobq"], work) as env:
        rate = produce("public_jobq", env, "enqueue-many", args.jobs, args.batch)["per_s"]
    return {"enqueue": rate}


def enqueue_sync(work: str, args: argparse.Namespace) -> dict[str, float]:
    """jobq durable ``enqueue_sync`` one at a time (no event loop), into a fresh spool."""
    with storage(SYSTEMS["jobq"], work) as env:
        return {"enqueue": produce("public_jobq", env, "enqueue-sync", args.jobs)["per_s"]}


def round_trip(system: System, work: str, args: argparse.Namespace) -> dict[str, float]:
    """Enqueue one job and await its result, against idle jobq workers (p50 and p99 in ms)."""
    with storage(system, work) as env, worker(system, env, args, subprocess.DEVNULL) as proc:
        wait_registered(env["JOBQ_SPOOL"], args.processes, proc)
        return produce("public_jobq", env, "round-trip", args.samples)


def loop_lag(system: System, work: str, args: argparse.Namespace) -> dict[str, float]:
    """The producer's event loop lag (µs) while it enqueues ``--jobs`` jobs one at a time."""
    with storage(system, work) as env:
        return produce("public_jobq", env, "enqueue-lag", args.jobs)


def floors(work: str, args: argparse.Namespace) -> dict[str, float]:
    """The raw floors (``floors.py``) on the same disk as the systems."""
    synced = min(args.jobs, args.fsync_ops)
    rates = {
        "rename": floor_rename(fresh(work, "floor"), args.jobs, durable=False),
        "rename+fsync": floor_rename(fresh(work, "floor"), synced, durable=True),
        "rename+journal": floor_rename(fresh(work, "floor"), synced, False, journaled=True),
        "rename+fsync-after": floor_rename(fresh(work, "floor"), synced, False, synced_after=True),
        "append+fdatasync": floor_append(fresh(work, "floor-append"), synced),
    }
    for durable in (False, True):
        name = "process-durable" if durable else "process"
        rate, cpu = floor_process(fresh(work, "floor"), args.jobs, args.processes, durable)
        rates[name], rates[f"{name}-cpu"] = rate, cpu
    return rates


def plan(args: argparse.Namespace) -> dict[str, Callable[[str], dict[str, float]]]:
    """Every measurement of a round, by name, in the order of even rounds."""
    runs: dict[str, Callable[[str], dict[str, float]]] = {
        key: functools.partial(workload, system, args=args) for key, system in SYSTEMS.items()
    }
    runs["jobq-many"] = lambda work: enqueue_many(work, args)
    runs["jobq-sync"] = lambda work: enqueue_sync(work, args)
    runs["rt-jobq"] = lambda work: round_trip(SYSTEMS["jobq"], work, args)
    runs["rt-jobq-nd"] = lambda work: round_trip(SYSTEMS["jobq-nd"], work, args)
    runs["lag-jobq"] = lambda work: loop_lag(SYSTEMS["jobq"], work, args)
    runs["lag-jobq-nd"] = lambda work: loop_lag(SYSTEMS["jobq-nd"], work, args)
    runs["floors"] = lambda work: floors(work, args)
    return runs


MEASURES = (
    *SYSTEMS, "jobq-many", "jobq-sync", "rt-jobq", "rt-jobq-nd", "lag-jobq", "lag-jobq-nd", "floors"
)  # fmt: skip
Results = dict[str, dict[str, list[float]]]


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by the whole machine and by this process with its children.

    The difference over a run is what other processes (and kernel threads) took meanwhile:
    another benchmark or test suite on the same cores skews every number here.
    """
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = stat.readline().split()[1:9]
    busy = sum(int(ticks) for ticks in (user, nice, system, irq, softirq, steal))
    ours = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), ours.user + ours.system + children_cpu()


def run_rounds(args: argparse.Namespace, work: str) -> tuple[Results, float]:
    """Every measurement ``--rounds`` times; the results and the CPU seconds others used."""
    runs = plan(args)
    if args.only:
        runs = {name: runs[name] for name in args.only.split(",")}
    results: Results = {name: {} for name in runs}
    others = 0.0
    for round_no in range(args.rounds):
        order = list(runs) if round_no % 2 == 0 else list(runs)[::-1]
        for name in order:
            busy, ours = cpu_seconds()
            measured = runs[name](work)
            busy_after, ours_after = cpu_seconds()
            other = max(0.0, (busy_after - busy) - (ours_after - ours))
            others += other
            for metric, value in measured.items():
                results[name].setdefault(metric, []).append(value)
            shown = "  ".join(f"{metric} {value:,.2f}" for metric, value in measured.items())
            print(f"round {round_no + 1}: {name}: {shown}  (others' CPU {other:.2f} s)",
                  file=sys.stderr, flush=True)  # fmt: skip
    return results, others


# -- the report --------------------------------------------------------------------------------


def median(results: Results, name: str, metric: str) -> float:
    return statistics.median(results[name][metric])


def output_of(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout.strip()


def machine_facts(directory: str) -> list[str]:
    """Versions, CPU and the filesystem of ``directory`` (type, device, journal, options)."""
    import dramatiq
    import huey

    found = output_of("findmnt", "-no", "FSTYPE,SOURCE,OPTIONS", "--target", directory).split()
    fstype, source, options = [*found, "?", "?", "?"][:3]
    journal = ""
    if fstype.startswith("ext") and shutil.which("dumpe2fs"):
        has_journal = "has_journal" in output_of("dumpe2fs", "-h", source)
        journal = ", journal" if has_journal else ", no journal"
    with open("/proc/cpuinfo") as cpuinfo:
        models = [
            line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
        ]
    model = models[0] if models else "?"
    server = output_of(redis_server_binary(), "--version").split()
    return [
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPUs ({model}), "
        f"Linux {platform.release()}, Python {platform.python_version()}",
        f"jobq {output_of('git', '-C', HERE, 'describe', '--always', '--dirty')}, "
        f"huey {huey.__version__}, dramatiq {dramatiq.__version__}, "
        f"redis-py {redis.__version__}, redis-server {' '.join(server[2:3])}",
        f"dir {directory}: {fstype} on {source}{journal} ({options})",
    ]


def report(args: argparse.Namespace, results: Results, seconds: float, others: float) -> None:
    print("\n".join(f"- {fact}" for fact in machine_facts(args.dir)))
    print(f"- CPU used by other processes and kernel threads meanwhile: {others:.1f} s "
          f"(of {seconds * (os.cpu_count() or 1):.0f} CPU-seconds)")  # fmt: skip
    print(f"- jobs {args.jobs}, rounds {args.rounds}, jobq {args.processes} x {args.concurrency}"
          f", batch {args.batch}, {seconds:.0f} s; medians\n")  # fmt: skip
    print("| system | enqueue jobs/s | process jobs/s | total s | first job s | CPU µs/job |")
    print("|---|---|---|---|---|---|")
    for key, system in SYSTEMS.items():
        if key in results:
            label = system.label.format(p=args.processes, c=args.concurrency)
            enqueue, process = median(results, key, "enqueue"), median(results, key, "process")
            total, first = median(results, key, "total"), median(results, key, "first")
            cpu = median(results, key, "cpu")
            print(f"| {label} | {enqueue:,.0f} | {process:,.0f} | {total:.2f} | {first:.2f} "
                  f"| {cpu:,.0f} |")  # fmt: skip
    if "jobq-sync" in results:
        one = median(results, "jobq-sync", "enqueue")
        print(f"| jobq durable `enqueue_sync` (no event loop) | {one:,.0f} | | | | |")
    if not args.only:
        many = median(results, "jobq-many", "enqueue")
        print(f"| jobq durable `enqueue_many`, batches of {args.batch} | {many:,.0f} | | | | |\n")
        print_targets(results)
    if "floors" in results:
        print_floors(args, results)
    if args.only:
        return
    print("\nper round (enqueue / process jobs/s):")
    for key in SYSTEMS:
        pairs = zip(results[key]["enqueue"], results[key]["process"], strict=True)
        print(f"- {key}: " + ", ".join(f"{e:,.0f} / {p:,.0f}" for e, p in pairs))


def print_targets(results: Results) -> None:
    """The issue's targets as ratios of the medians (above 1: jobq ahead)."""

    def best(metric: str) -> float:
        return max(median(results, "huey", metric), median(results, "dramatiq", metric))

    def ratio(name: str, metric: str, against: float, target: float) -> tuple[str, bool]:
        value = median(results, name, metric) / against
        return f"{value:.2f}x", value >= target

    aof_enqueue = median(results, "huey-aof", "enqueue")
    rows = [
        ("non-durable enqueue, jobq / best of Huey, Dramatiq", ">= 1.3x",
         *ratio("jobq-nd", "enqueue", best("enqueue"), 1.3)),
        ("non-durable processing, jobq / best of Huey, Dramatiq", ">= 1.3x",
         *ratio("jobq-nd", "process", best("process"), 1.3)),
        ("durable processing, jobq / Huey `appendfsync always`", ">= 1.5x",
         *ratio("jobq", "process", median(results, "huey-aof", "process"), 1.5)),
        ("durable single enqueue, jobq / Huey `appendfsync always`", ">= 1.0x",
         *ratio("jobq", "enqueue", aof_enqueue, 1.0)),
        ("durable `enqueue_many`, jobq / Huey `appendfsync always` enqueue", ">= 3x",
         *ratio("jobq-many", "enqueue", aof_enqueue, 3.0)),
    ]  # fmt: skip
    if "jobq-sync" in results:
        rows.insert(4, ("durable single enqueue from sync code (`enqueue_sync`), same ratio",
                        ">= 1.0x", *ratio("jobq-sync", "enqueue", aof_enqueue, 1.0)))  # fmt: skip
    for name, label, limit in (("rt-jobq", "durable", 1.0), ("rt-jobq-nd", "non-durable", 0.5)):
        p50, p99 = median(results, name, "p50_ms"), median(results, name, "p99_ms")
        rows.append((f"round trip p50 (p99), idle worker, jobq {label}", f"<= {limit} ms",
                     f"{p50:.2f} ms ({p99:.2f})", p50 <= limit))  # fmt: skip
    for name, label in (("lag-jobq", "durable"), ("lag-jobq-nd", "non-durable")):
        if name in results:
            lag = [median(results, name, f"lag_{q}_us") / 1000 for q in ("p50", "p99", "max")]
            shown = " / ".join(f"{v:.2f} ms" for v in lag)
            what = f"event loop lag during single enqueues, {label}: p50 / p99 / max"
            rows.append((what, "<= ~1 ms", shown, lag[1] <= 1.0))
    print("| target of issue 10 | wanted | measured | met |")
    print("|---|---|---|---|")
    for what, wanted, measured, met in rows:
        print(f"| {what} | {wanted} | {measured} | {'yes' if met else 'no'} |")


def print_floors(args: argparse.Namespace, results: Results) -> None:
    synced = min(args.jobs, args.fsync_ops)
    rows = [
        ("rename", f"O_EXCL create + write + close + rename tmp/ -> pending/ ({args.jobs})"),
        ("rename+fsync", f"the same + fsync(file) + fsync(pending/) ({synced})"),
        ("rename+journal", f"rename, then append to a journal + fdatasync ({synced})"),
        ("rename+fsync-after", f"rename, then fsync(file) ({synced})"),
        ("append+fdatasync", f"append a line + fdatasync, one file (Redis AOF always; {synced})"),
        ("process", f"a worker's files per job, {args.processes} processes ({args.jobs})"),
        ("process-durable", f"the same, records synced in groups of {GROUP} ({args.jobs})"),
    ]
    print("\n| floor: Python, same disk (`floors.py`) | per s | µs each | CPU µs each |")
    print("|---|---|---|---|")
    for metric, label in rows:
        rate = median(results, "floors", metric)
        cpu = results["floors"].get(f"{metric}-cpu")
        shown = f"{statistics.median(cpu):,.0f}" if cpu else ""
        print(f"| {label} | {rate:,.0f} | {1e6 / rate:,.0f} | {shown} |")


def compile_sources() -> None:
    """Byte-compile jobq and the job modules, so that every system starts from bytecode.

    pip compiles the peers when it installs them; jobq run from a checkout, with
    ``PYTHONDONTWRITEBYTECODE`` set, would compile itself again at every worker start.
    """
    import jobq

    for directory in (os.path.dirname(jobq.__file__), HERE):
        compileall.compile_dir(directory, quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2, help="jobq worker processes")
    parser.add_argument("--concurrency", type=int, default=10, help="jobq jobs per process")
    parser.add_argument("--batch", type=int, default=100, help="jobq enqueue_many batch")
    parser.add_argument("--samples", type=int, default=200, help="round trips per round")
    parser.add_argument("--fsync-ops", type=int, default=2000, help="ops of the synced floors")
    parser.add_argument("--dir", default="/var/tmp", help="where spools and Redis data go")
    parser.add_argument("--only", help="comma-separated measurements: " + ", ".join(MEASURES))
    args = parser.parse_args()
    if args.only and not set(args.only.split(",")) <= set(MEASURES):
        parser.error(f"--only takes some of {', '.join(MEASURES)}")
    redis_server_binary()
    compile_sources()
    work = tempfile.mkdtemp(prefix="public-workload-", dir=args.dir)
    started_at = time.perf_counter()
    try:
        results, others = run_rounds(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, results, time.perf_counter() - started_at, others)


if __name__ == "__main__":
    main()
