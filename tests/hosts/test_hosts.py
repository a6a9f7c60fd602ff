"""Several hosts on one spool: a real GlusterFS volume, one FUSE mount per host namespace.

The cluster (``cluster.py``) is built once for the module: a server namespace with glusterd and
one brick, and three host namespaces that each mount the volume with their own client. Workers
run in the hosts' namespaces with ``--lease 5``; jobs (``hosts_app.record``) note each start
in a file local to their host, outside the spool, which the checks compare with the records.
Needs root and GlusterFS (``make gluster``); skipped otherwise. Run with ``make test-hosts``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hosts_app
import pytest
from books import Books, audit, done_ids, fmt, read_side_effects, timeline
from cluster import Cluster, missing_requirements

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

HERE = Path(__file__).resolve().parent
LEASE = "5"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Three hosts and a server, torn down after the module whatever happened."""
    reason = missing_requirements()
    if reason is not None:
        pytest.skip(reason)
    built = Cluster.start(3)
    try:
        yield built
    finally:
        built.close()


# -- workers and producers ---------------------------------------------------------------


@dataclass
class HostWorker:
    """One ``jobq worker hosts_app`` process in a host's namespace."""

    host: int
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        """Its stdout and stderr so far."""
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (graceful) if it still runs; its exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        return self.proc.poll()


def start_worker(cluster: Cluster, host: int, spool: str, tmp_path: Path) -> HostWorker:
    """Start a worker on ``host`` serving ``spool`` (a folder of the volume) through its mount."""
    log = tmp_path / f"worker-h{host}-{time.monotonic_ns()}.log"
    env = {
        hosts_app.OUT_ENV: str(tmp_path / "out"),
        hosts_app.HOST_ENV: f"h{host}",
        "PYTHONUNBUFFERED": "1",
    }
    (tmp_path / "out").mkdir(exist_ok=True)
    argv = ["jobq", "worker", "hosts_app", "--spool", str(cluster.mount(host) / spool),
            "--lease", LEASE, "--grace", "5"]  # fmt: skip
    with log.open("wb") as out:
        proc = cluster.run_in_host(host, argv, env, cwd=HERE, stdout=out, stderr=subprocess.STDOUT)
    worker = HostWorker(host, proc, log)
    wait_registered(cluster.mount(1) / spool, worker)
    return worker


def wait_registered(spool: Path, worker: HostWorker, timeout: float = 30) -> None:
    """Wait until ``worker`` has a registration in ``spool`` (read through any mount)."""
    deadline = time.monotonic() + timeout
    while worker.proc.pid not in registered_pids(spool):
        if worker.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"worker on h{worker.host} did not register:\n{worker.output()}")
        time.sleep(0.05)


def registered_pids(spool: Path) -> set[int]:
    """The pids in ``workers/*.json``."""
    pids = set()
    for path in (spool / "workers").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            pids.add(int(json.loads(path.read_bytes())["pid"]))
    return pids


def enqueue(cluster: Cluster, host: int, spool: str, count: int, batch: str) -> list[str]:
    """Enqueue ``count`` jobs from ``host`` through its mount; their ids."""
    argv = [sys.executable, "hosts_app.py", str(cluster.mount(host) / spool), str(count), batch]
    done = cluster.call(host, argv, cwd=HERE, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def wait_done(spool: Path, ids: Iterable[str], timeout: float) -> None:
    """Wait until every job of ``ids`` has a ``done`` record."""
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while missing := wanted - done_ids(spool):
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(missing)} jobs not done after {timeout} s")
        time.sleep(0.2)


def status(cluster: Cluster, host: int, spool: str) -> dict[str, Any]:
    """``jobq status --json`` run on ``host`` against its own mount, without the path."""
    argv = ["jobq", "status", "--json", "--spool", str(cluster.mount(host) / spool)]
    done = cluster.call(host, argv)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    report.pop("spool")
    return report


def statuses_agree(cluster: Cluster, spool: str, timeout: float = 15) -> list[dict[str, Any]]:
    """Every host's status, read again (the clients cache for about a second) until they agree."""
    deadline = time.monotonic() + timeout
    while True:
        reports = [status(cluster, i, spool) for i in cluster.hosts]
        if all(r == reports[0] for r in reports) or time.monotonic() > deadline:
            return reports
        time.sleep(0.5)


# -- a: one view from every mount ----------------------------------------------------------


@pytest.mark.timeout(180)
def test_status_same_from_every_mount(cluster: Cluster, tmp_path: Path) -> None:
    workers = [start_worker(cluster, i, "status", tmp_path) for i in cluster.hosts]
    ids = enqueue(cluster, 1, "status", 300, "a")
    wait_done(cluster.mount(1) / "status", ids, timeout=90)
    codes = [w.stop() for w in workers]
    assert codes == [0, 0, 0], [w.output()[-2000:] for w in workers]

    reports = statuses_agree(cluster, "status")

    assert all(r == reports[0] for r in reports), reports
    assert reports[0]["queues"]["default"]["done"] == 300
    assert reports[0]["workers"] == []
    ran_on = Counter(row[1] for row in read_side_effects(tmp_path / "out"))
    print(f"300 jobs ran on: {dict(sorted(ran_on.items()))}")


# -- b: what a rename race looks like across clients ---------------------------------------


def race(cluster: Cluster, mode: str, rounds: int) -> Counter[int]:
    """``rounds`` races of hosts 1 and 2 renaming one file; how many rounds had 0/1/2 winners."""
    folder = f"race-{mode}"
    (cluster.mount(1) / folder).mkdir()
    actors = []
    for i in (1, 2):
        argv = [sys.executable, "race_actor.py", str(cluster.mount(i) / folder), f"h{i}", mode]
        pipe = subprocess.PIPE
        actors.append(cluster.run_in_host(i, argv, cwd=HERE, stdin=pipe, stdout=pipe))
    winners: Counter[int] = Counter()
    try:
        for n in range(rounds):
            (cluster.mount(1) / folder / f"src{n}").write_bytes(b"x")
            at = time.monotonic() + 0.005
            for actor in actors:
                assert actor.stdin is not None
                actor.stdin.write(f"{n} {at}\n".encode())
                actor.stdin.flush()
            answers = [actor.stdout.readline().split() for actor in actors if actor.stdout]
            assert all(int(a[0]) == n for a in answers), answers
            winners[sum(int(a[1]) for a in answers)] += 1
    finally:
        for actor in actors:
            assert actor.stdin is not None
            actor.stdin.close()
            actor.wait(timeout=30)
            assert actor.stdout is not None
            actor.stdout.close()
    return winners


@pytest.mark.timeout(180)
def test_same_destination_rename_race(cluster: Cluster) -> None:
    rounds = 300
    same = race(cluster, "same", rounds)
    per_worker = race(cluster, "per", rounds)

    print(f"same destination, {rounds} rounds: winners per round {dict(same)}; both won in "
          f"{same[2]} ({100 * same[2] / rounds:.0f}%; docs: 18-38%)")  # fmt: skip
    print(f"per-worker destinations, {rounds} rounds: winners per round {dict(per_worker)}")
    assert per_worker == Counter({1: rounds})
    assert same[0] == 0
    # Both renames reported success in 23-44% of the rounds in every run here (the docs say
    # 18-38%), so that it happens is checked; its rate is only printed. jobq relies on the
    # per-worker property above, not on this one.
    assert same[2] > 0, "same-destination renames never both reported success"


# -- the volume's caches: a name replaced by another host --------------------------------


def keep_listing(folder: Path, stop: threading.Event) -> None:
    """List ``folder`` until ``stop`` is set (as ``jobq status`` and the claim scan do)."""
    while not stop.is_set():
        os.listdir(folder)


@pytest.mark.timeout(180)
def test_replaced_name_reads_back(cluster: Cluster) -> None:
    """A name that host 3 renames a new file over reads back new on host 1's first open.

    This is a commit's second rename (the record over ``done/Q/ID.json``) while another host
    lists ``done/Q/``. With GlusterFS's md-cache on, 5-140 of 1500 such names failed their
    first open with ENOENT on the listing host; ``cluster.VOLUME_OPTIONS`` turns it off.
    """
    writer, reader = cluster.mount(3) / "replace", cluster.mount(1) / "replace"
    (writer / "tmp").mkdir(parents=True)
    (writer / "done").mkdir()
    stop = threading.Event()
    lister = threading.Thread(target=keep_listing, args=(reader / "done", stop), daemon=True)
    lister.start()
    rounds = 1500
    try:
        for n in range(rounds):
            for content in (b"bare", b"full"):
                staged = writer / "tmp" / f"{n}.{content.decode()}"
                staged.write_bytes(content)
                os.rename(staged, writer / "done" / f"{n}.json")
    finally:
        stop.set()
        lister.join(timeout=30)

    bad: dict[str, str] = {}
    for name in os.listdir(reader / "done"):
        try:
            content = (reader / "done" / name).read_bytes()
        except OSError as exc:
            bad[name] = exc.strerror or str(exc)
        else:
            if content != b"full":
                bad[name] = repr(content)
    print(f"{rounds} names replaced on h3 while h1 listed them: {len(bad)} bad first reads on h1")
    assert len(os.listdir(reader / "done")) == rounds
    assert bad == {}


# -- c: the campaign: SIGKILL, a partition, and the books must balance ---------------------


@dataclass
class Partition:
    """What the probe saw of host 2's mount around the cut (monotonic seconds)."""

    cut_at: float = 0.0
    failed_at: float | None = None
    error: str | None = None
    restored_at: float = 0.0
    back_after: float | None = None
    worker_exit_after: float | None = None
    wall: dict[str, float] = field(default_factory=dict)


def probe_until_error(cluster: Cluster, host: int, seen: Partition, stop: threading.Event) -> None:
    """Probe ``host``'s mount until it fails (the first failure's time and errno go to ``seen``)."""
    while not stop.is_set():
        error = cluster.probe(host)
        if error is not None:
            seen.failed_at, seen.error = time.monotonic(), error
            return
        time.sleep(0.1)


def collect_lines(stream: Any, into: list[str]) -> None:
    """Append every line of ``stream`` to ``into`` (the producer's job ids)."""
    for line in stream:
        into.append(line.decode().strip())


@dataclass
class Campaign:
    """The campaign's processes and what happened when."""

    cluster: Cluster
    tmp_path: Path
    spool: str = "campaign"
    workers: dict[int, HostWorker] = field(default_factory=dict)
    killed: list[HostWorker] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    partition: Partition = field(default_factory=Partition)

    @property
    def path(self) -> Path:
        """The spool through host 1's mount."""
        return self.cluster.mount(1) / self.spool

    def start_workers(self) -> None:
        """One worker per host."""
        for i in self.cluster.hosts:
            self.workers[i] = start_worker(self.cluster, i, self.spool, self.tmp_path)

    def kill_and_restart(self, host: int, down: float) -> None:
        """SIGKILL ``host``'s worker, start a new one ``down`` seconds later."""
        old = self.workers[host]
        os.kill(old.proc.pid, signal.SIGKILL)
        old.proc.wait()
        self.killed.append(old)
        self.partition.wall[f"kill h{host}"] = time.time()
        time.sleep(down)
        self.workers[host] = start_worker(self.cluster, host, self.spool, self.tmp_path)
        self.partition.wall[f"restart h{host}"] = time.time()

    def cut_for(self, host: int, seconds: float) -> None:
        """Cut ``host`` off for ``seconds``; time the mount's failure and its recovery."""
        seen = self.partition
        stop = threading.Event()
        prober = threading.Thread(
            target=probe_until_error, args=(self.cluster, host, seen, stop), daemon=True
        )
        seen.wall["cut"] = time.time()
        seen.cut_at = time.monotonic()
        self.cluster.cut(host)
        prober.start()
        while (now := time.monotonic()) < seen.cut_at + seconds:
            if seen.worker_exit_after is None and self.workers[host].proc.poll() is not None:
                seen.worker_exit_after = now - seen.cut_at
                seen.wall[f"h{host} worker exited"] = time.time()
            time.sleep(0.05)
        stop.set()
        prober.join(timeout=60)
        self.cluster.restore(host)
        seen.wall["restore"] = time.time()
        seen.restored_at = time.monotonic()
        seen.back_after = self.cluster.wait_mount(host, timeout=120)
        seen.wall["mount works again"] = time.time()


@pytest.mark.timeout(420)
def test_campaign(cluster: Cluster, tmp_path: Path) -> None:
    """2400 jobs trickle in from host 1 (60 a second) to a worker on each host.

    Once 200 are done, host 3's worker is SIGKILLed and a new one started 3 s later (so that a
    live worker on that host reaps the dead one's jobs, as a supervisor's restart would); a
    second later host 2 is cut off for 20 s. Then 300 more jobs, of which a live host 2 must
    run some. The books must balance and every mount must show the same status.
    """
    camp = Campaign(cluster, tmp_path)
    camp.start_workers()
    try:
        second = run_campaign(camp)
    except BaseException:
        if camp.partition.wall.get("cut"):
            print("\n".join(timeline(camp.workers[2].output(), camp.partition.wall)))
        raise
    h2_alive = camp.workers[2].proc.poll() is None
    codes = {i: w.stop() for i, w in camp.workers.items()}
    reports = statuses_agree(cluster, camp.spool)

    books = audit(camp.path, camp.ids + second, tmp_path / "out")
    later = set(second)
    h2_rows = [row for row in read_side_effects(tmp_path / "out") if row[1] == "h2"]
    h2_second = sum(1 for row in h2_rows if row[0] in later)
    print_report(camp, books, codes, h2_alive, h2_second)

    assert books.lost == []
    assert books.doubled == []
    assert books.started_twice == []
    assert books.stale == []
    assert all(r == reports[0] for r in reports), reports
    assert reports[0]["queues"]["default"]["done"] == len(camp.ids) + len(second)
    assert codes[1] == 0
    assert codes[3] == 0
    assert h2_alive, "host 2's worker died during the partition:\n" + tail(camp.workers[2], 25)
    assert h2_second > 0, "host 2's worker ran none of the jobs enqueued after the partition"
    assert codes[2] == 0


def run_campaign(camp: Campaign) -> list[str]:
    """The campaign's events (see ``test_campaign``); the ids of the jobs enqueued after it."""
    producer = camp.cluster.run_in_host(
        1, [sys.executable, "hosts_app.py", str(camp.path), "2400", "b1", "60", "1.0"],
        cwd=HERE, stdout=subprocess.PIPE,
    )  # fmt: skip
    reader = threading.Thread(target=collect_lines, args=(producer.stdout, camp.ids), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while len(done_ids(camp.path)) < 200:  # the kill and the cut come mid-stream
        if time.monotonic() > deadline:
            raise AssertionError("fewer than 200 jobs done after 60 s: the campaign never ran")
        time.sleep(0.1)
    camp.kill_and_restart(3, down=3.0)
    time.sleep(1.0)
    camp.cut_for(2, seconds=20.0)
    assert producer.wait(timeout=120) == 0
    reader.join()
    wait_done(camp.path, camp.ids, timeout=120)
    second = enqueue(camp.cluster, 1, camp.spool, 300, "b2")
    wait_done(camp.path, second, timeout=120)
    return second


# -- the report ----------------------------------------------------------------------------


def tail(worker: HostWorker, lines: int) -> str:
    """The last ``lines`` lines of a worker's output."""
    return "\n".join(worker.output().splitlines()[-lines:])


def print_report(
    camp: Campaign, books: Books, codes: dict[int, int | None], h2_alive: bool, h2_second: int
) -> None:
    """What happened, for the test log (shown with ``-rA`` or on failure)."""
    seen = camp.partition
    detect = None if seen.failed_at is None else seen.failed_at - seen.cut_at
    print(f"jobs: {len(camp.ids)} in batch 1 (trickled, 60/s) + 300 after the partition")
    print(f"starts per host: {books.ran_on}; jobs started more than once: {books.reruns}")
    print(f"lost {len(books.lost)}, recorded twice {len(books.doubled)}, same attempt started "
          f"twice {len(books.started_twice)}, stale records {len(books.stale)}")  # fmt: skip
    for sample in (books.lost[:5], books.doubled[:5], books.started_twice[:5], books.stale[:5]):
        if sample:
            print(f"  e.g. {sample}")
    print(f"h3: SIGKILLed (exit {camp.killed[0].proc.returncode}), restarted after 3 s")
    print(f"h2 cut for 20 s: mount failed with {seen.error} {fmt(detect)} s after the cut; "
          f"works again {fmt(seen.back_after)} s after restore")  # fmt: skip
    if seen.worker_exit_after is not None:
        print(f"h2 worker exited {fmt(seen.worker_exit_after)} s after the cut")
    print(f"h2 worker alive after restore: {h2_alive}; ran {h2_second} of the 300 later jobs")
    print(f"exit codes at the end (SIGTERM): {codes}")
    print("h2 worker timeline (seconds from the cut):")
    for line in timeline(camp.workers[2].output(), seen.wall):
        print("  " + line)
