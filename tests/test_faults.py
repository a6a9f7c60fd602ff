"""Crash safety with real ``jobq worker`` processes and real signals.

SIGKILL in the middle of a campaign, SIGSTOP past the lease (fencing), SIGTERM within and beyond
``--grace``, and a second SIGTERM. Jobs come from ``tests/fault_app.py`` and leave side effects
(one line per start and end) that the tests read; leases are short (``--lease 1``) so that
recovery happens within a second or two. Workers run on asyncio and trio.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import fault_app
import pytest
from conftest import wait_for

from jobq import layout

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TESTS = Path(__file__).resolve().parent
JOBQ = os.path.join(os.path.dirname(sys.executable), "jobq")
BACKENDS = ("asyncio", "trio")


# -- helpers -------------------------------------------------------------------------------


@dataclass
class Proc:
    """One ``jobq worker`` process and the file its output goes to."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.popen.pid

    def output(self) -> str:
        """What it logged so far."""
        return self.log.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        """Send ``signum`` to this process (by PID)."""
        os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int:
        """Wait for it to exit; its exit code."""
        return self.popen.wait(timeout=timeout)


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """Start ``jobq worker fault_app`` processes; any still running are SIGKILLed at teardown."""
    started: list[Proc] = []

    def start(spool: Path, *args: str, backend: str = "asyncio", lease: float = 1.0) -> Proc:
        log = tmp_path / f"worker-{len(started)}.log"
        command = [
            JOBQ, "worker", "fault_app", "--spool", str(spool), "--backend", backend,
            "--lease", str(lease), *args,
        ]  # fmt: skip
        with log.open("wb") as out:
            popen = subprocess.Popen(command, cwd=TESTS, stdout=out, stderr=subprocess.STDOUT)
        started.append(Proc(popen, log))
        return started[-1]

    yield start
    for proc in started:
        if proc.popen.poll() is None:
            proc.popen.kill()  # SIGKILL also ends a stopped process
            proc.popen.wait()


def records(spool: Path, state: str, queue: str = "default") -> dict[str, dict[str, Any]]:
    """The outcome records in ``STATE/QUEUE/``, by job id."""
    found = {}
    for path in (spool / state / queue).glob("*.json"):
        found[path.stem] = json.loads(path.read_bytes())
    return found


def status(spool: Path, *job_id: str) -> Any:
    """``jobq status [JOB_ID] --json``."""
    done = subprocess.run(
        [JOBQ, "status", *job_id, "--json", "--spool", str(spool)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    info = json.loads(done.stdout)
    failed = bool(job_id) and info["state"] == "failed"  # "job failed" exits 1
    assert done.returncode == (1 if failed else 0), done.stderr
    return info


def worker_pid(worker_id: str) -> int:
    """The pid inside a worker id (``host.pid.token``)."""
    return int(worker_id.split(".")[-2])


def running_files(spool: Path) -> list[Path]:
    """Every job file held in ``running/*/``."""
    return sorted((spool / "running").glob("*/*"))


def notes(path: Path, event: str | None = None) -> list[tuple[str, int, int, str]]:
    """Side-effect lines written by the jobs, optionally only one kind of event."""
    return [n for n in fault_app.read_notes(path) if event is None or n[3] == event]


# -- SIGKILL campaign ----------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_campaign_every_job_done_exactly_once(
    spool_path: Path, tmp_path: Path, start_worker: Callable[..., Proc], backend: str
) -> None:
    out = tmp_path / "effects"
    calls = [(str(out), 0.05) for _ in range(300)]
    handles = anyio.run(fault_app.mark.enqueue_many, calls, backend=backend)
    ids = {h.id for h in handles}
    assert len(ids) == 300

    first = start_worker(spool_path, "--concurrency", "4", backend=backend)
    second = start_worker(spool_path, "--concurrency", "4", backend=backend)
    wait_for(lambda: len(notes(out, "end")) >= 60, "a fifth of the jobs to run")
    wait_for(lambda: any(n[2] == first.pid for n in notes(out, "end")), "the first worker")
    wait_for(
        lambda: any(f".{first.pid}." in p.parent.name for p in running_files(spool_path)),
        "the first worker to hold a job",
    )
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    # Dead with jobs in hand: they are still claimed in its running directory.
    orphans = [p for p in running_files(spool_path) if f".{first.pid}." in p.parent.name]
    assert orphans, "the killed worker held no job: the test proved nothing"
    # A job file at its fence name was being committed when the worker died: the reaper
    # completes that commit from the staged record rather than running the job again.
    orphan_ids = {p.name.split("-")[-2] for p in orphans if not layout.is_fence_name(p.name)}
    fenced_ids = {p.name.split("-")[-2] for p in orphans if layout.is_fence_name(p.name)}

    third = start_worker(spool_path, "--concurrency", "4", backend=backend)
    done_dir = spool_path / "done" / "default"
    wait_for(lambda: len(os.listdir(done_dir)) >= 300, "all 300 records", timeout=60)
    for proc in (second, third):
        proc.signal(signal.SIGTERM)
    assert second.wait(20) == 0
    assert third.wait(20) == 0

    # Exactly once in the records, nothing left anywhere else.
    done = records(spool_path, "done")
    assert set(done) == ids
    counts = status(spool_path)["queues"]["default"]
    assert counts == {
        "pending": 0, "scheduled": 0, "waiting": 0, "running": 0, "done": 300, "failed": 0,
        "cancelled": 0,
    }  # fmt: skip
    assert running_files(spool_path) == []
    # Every recorded outcome is the recording worker's own, and its side effect happened.
    ended = {(n[0], n[2]) for n in notes(out, "end")}
    for job_id, record in done.items():
        assert record["state"] == "done"
        assert record["result"] == worker_pid(record["worker"])
        assert (job_id, record["result"]) in ended
    # The killed worker's jobs ran again elsewhere, with their start counted.
    for job_id in orphan_ids:
        assert done[job_id]["attempts"] >= 2
        assert done[job_id]["result"] != first.pid
    for job_id in fenced_ids:
        assert done[job_id]["attempts"] == 1
        assert done[job_id]["result"] == first.pid
    reaper_logs = second.output() + third.output()
    assert "reaped worker" in reaper_logs
    assert f".{first.pid}." in reaper_logs


# -- SIGSTOP past the lease: fencing -------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigstop_past_lease_cannot_overwrite_newer_outcome(
    spool_path: Path, tmp_path: Path, start_worker: Callable[..., Proc], backend: str
) -> None:
    out = tmp_path / "effects"
    handle = fault_app.nap.enqueue_sync(str(out), 1.0)
    frozen = start_worker(spool_path, backend=backend)
    wait_for(lambda: notes(out, "start"), "the first worker to start the job")
    frozen.signal(signal.SIGSTOP)

    rescuer = start_worker(spool_path, backend=backend)
    record_path = spool_path / "done" / "default" / f"{handle.id}.json"
    wait_for(lambda: record_path.exists() and b'"state"' in record_path.read_bytes(), "record")
    recorded = record_path.read_bytes()
    assert json.loads(recorded)["result"] == rescuer.pid

    frozen.signal(signal.SIGCONT)
    # The woken worker finds its lease gone: it discards its outcome or stops the job, and
    # says so; either way it logs a warning and the record stays the rescuer's.
    wait_for(
        lambda: "outcome discarded" in frozen.output() or "lost its lease" in frozen.output(),
        "the woken worker's warning",
    )
    wait_for(lambda: "re-registering" in frozen.output() or len(_worker_files(spool_path)) == 2,
             "the woken worker to come back")  # fmt: skip
    assert record_path.read_bytes() == recorded
    record = json.loads(recorded)
    assert record["attempts"] == 2
    assert worker_pid(record["worker"]) == rescuer.pid
    assert handle.result_sync(timeout=5) == rescuer.pid
    assert [n[2] for n in notes(out, "start")] == [frozen.pid, rescuer.pid]

    # Still a healthy worker under a new id: it keeps running jobs.
    second = fault_app.mark.enqueue_sync(str(out), 0.0)
    assert second.result_sync(timeout=10) in (frozen.pid, rescuer.pid)
    for proc in (frozen, rescuer):
        proc.signal(signal.SIGTERM)
    assert frozen.wait(20) == 0
    assert rescuer.wait(20) == 0
    assert record_path.read_bytes() == recorded
    assert list((spool_path / "failed" / "default").iterdir()) == []


def _worker_files(spool: Path) -> list[Path]:
    return sorted((spool / "workers").glob("*.json"))


# -- SIGTERM: graceful shutdown ------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_lets_a_short_job_finish(
    spool_path: Path, tmp_path: Path, start_worker: Callable[..., Proc], backend: str
) -> None:
    out = tmp_path / "effects"
    handle = fault_app.nap.enqueue_sync(str(out), 0.5)
    worker = start_worker(spool_path, "--grace", "10", backend=backend)
    wait_for(lambda: notes(out, "start"), "the job to start")
    worker.signal(signal.SIGTERM)
    started = time.monotonic()
    assert worker.wait(10) == 0
    assert time.monotonic() - started < 5  # it did not wait for the whole grace period
    assert handle.result_sync(timeout=1) == worker.pid
    assert _worker_files(spool_path) == []  # it left cleanly


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_the_moment_a_worker_registers_is_a_graceful_stop(
    spool_path: Path, start_worker: Callable[..., Proc], backend: str
) -> None:
    # Whoever sees a worker registered may stop it: its signals are handled from then, not
    # from a moment later (a SIGTERM in between killed it and left its registration behind).
    # The app stops its own process once registered; the SIGTERM is pending when it resumes.
    worker = start_worker(spool_path, "apps.pause_at_register", backend=backend)
    wait_for(lambda: _process_state(worker.pid) == "T", "the worker to stop once registered")
    assert len(_worker_files(spool_path)) == 1
    worker.signal(signal.SIGTERM)
    worker.signal(signal.SIGCONT)
    assert worker.wait(10) == 0, worker.output()
    assert _worker_files(spool_path) == []


def _process_state(pid: int) -> str:
    """The one-letter state of process ``pid`` (``T`` when stopped), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0]


@pytest.mark.parametrize("kind", ["nap", "nap_sync"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_requeues_a_job_longer_than_grace_at_once(
    spool_path: Path, tmp_path: Path, start_worker: Callable[..., Proc], backend: str, kind: str
) -> None:
    out = tmp_path / "effects"
    job = fault_app.nap if kind == "nap" else fault_app.nap_sync
    handle = job.enqueue_sync(str(out), 60.0)
    # A long lease: the job must come back through the shutdown, not through a lease expiry.
    worker = start_worker(spool_path, "--grace", "0.5", backend=backend, lease=60)
    wait_for(lambda: notes(out, "start"), "the job to start")
    worker.signal(signal.SIGTERM)
    started = time.monotonic()
    assert worker.wait(10) == 0  # a sync job's abandoned thread does not keep it alive
    assert time.monotonic() - started < 5
    info = status(spool_path, handle.id)
    assert info["state"] == "pending"
    assert info["attempts"] == 1
    assert running_files(spool_path) == []
    assert _worker_files(spool_path) == []
    assert "end" not in {n[3] for n in notes(out)}


@pytest.mark.parametrize(("backend", "kind"), [("asyncio", "nap"), ("trio", "nap_sync")])
def test_second_sigterm_stops_at_once_and_the_lease_recovers_the_job(
    spool_path: Path, tmp_path: Path, start_worker: Callable[..., Proc], backend: str, kind: str
) -> None:
    out = tmp_path / "effects"
    job = fault_app.nap if kind == "nap" else fault_app.nap_sync
    handle = job.enqueue_sync(str(out), 1.5)
    worker = start_worker(spool_path, "--grace", "60", backend=backend)
    wait_for(lambda: notes(out, "start"), "the job to start")
    worker.signal(signal.SIGTERM)
    wait_for(lambda: "finishing running jobs" in worker.output(), "the first signal")
    worker.signal(signal.SIGTERM)
    started = time.monotonic()
    assert worker.wait(10) == 1  # a hard stop is not a clean exit
    assert time.monotonic() - started < 3  # not the 60 s grace, nor the 1.5 s job
    assert "second signal" in worker.output()
    assert status(spool_path, handle.id)["state"] == "running"  # held until its lease expires

    rescuer = start_worker(spool_path, backend=backend)
    assert handle.result_sync(timeout=20) == rescuer.pid
    assert status(spool_path, handle.id)["attempts"] == 2
    rescuer.signal(signal.SIGTERM)
    assert rescuer.wait(10) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_worker_frozen_past_its_lease_comes_back_under_a_new_id(
    spool_path: Path, tmp_path: Path, start_worker: Callable[..., Proc], backend: str
) -> None:
    out = tmp_path / "effects"
    handles = [fault_app.mark.enqueue_sync(str(out), 0.1) for _ in range(30)]
    worker = start_worker(spool_path, "--concurrency", "2", backend=backend)
    wait_for(lambda: notes(out, "start"), "the first job to start")
    (old,) = _worker_files(spool_path)
    worker.signal(signal.SIGSTOP)
    time.sleep(1.5)  # the fault itself: frozen for longer than the 1 s lease, nobody reaps
    worker.signal(signal.SIGCONT)
    wait_for(lambda: "lost its lease" in worker.output(), "the worker to notice")
    # It re-registers promptly, while plenty of work is still pending (it does not keep
    # claiming under its old id), and it is live again.
    pending = spool_path / "queues" / "default" / "pending"

    def back_with_work_left() -> list[str] | None:
        if old.exists() or len(_worker_files(spool_path)) != 1:
            return None
        return [*os.listdir(pending), "(checked)"]

    assert len(wait_for(back_with_work_left, "a new id", 10)) > 1
    assert [w["pid"] for w in status(spool_path)["workers"]] == [worker.pid]
    for handle in handles:
        assert handle.result_sync(timeout=30) == worker.pid
    assert len(records(spool_path, "done")) == 30
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0
