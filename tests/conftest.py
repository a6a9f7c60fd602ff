"""Shared fixtures: every async test runs under asyncio and trio; each test gets its own spool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import jobq

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from jobq.spool import Claimed, SpoolDir

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test once per backend."""
    return str(request.param)


@pytest.fixture(autouse=True)
def no_journal() -> Iterator[None]:
    """Durable enqueues in this process fsync their job files and then their directories,
    whatever filesystem runs the tests: the tests of ``jobq.spool.journal`` choose otherwise."""
    from jobq.spool import journal

    journal.FORCE = journal.FORCE_ENTRY = False
    yield
    journal.FORCE = journal.FORCE_ENTRY = None


@pytest.fixture
def spool_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh spool directory, also made the process default (``JOBQ_SPOOL``)."""
    path = tmp_path / "spool"
    monkeypatch.setenv("JOBQ_SPOOL", str(path))
    jobq.configure(spool=path)
    yield path
    jobq.config._configured_spool = None


def jobq_command(*args: str) -> list[str]:
    """The installed ``jobq`` entry point with arguments."""
    return [os.path.join(os.path.dirname(sys.executable), "jobq"), *args]


def run_jobq(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``jobq`` command and capture its output."""
    return subprocess.run(
        jobq_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


TESTS = Path(__file__).resolve().parent


class WorkerProcess:
    """A real ``jobq worker`` process started by the ``worker_process`` fixture.

    Attributes:
        proc: the process.
        log: the file its stdout and stderr go to.
    """

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.proc.pid

    def output(self) -> str:
        """What the worker printed so far."""
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 60) -> int:
        """Wait for the worker to exit; its exit code."""
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (a graceful stop) and wait; its exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def wait_registered(self, spool: Path, timeout: float = 30) -> None:
        """Wait until this worker has registered in ``spool`` (it handles signals from then)."""
        deadline = time.monotonic() + timeout
        while not any(_pid_of(p) == self.pid for p in (spool / "workers").glob("*.json")):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"worker {self.pid} did not register:\n{self.output()}")
            time.sleep(0.02)

    def kill(self) -> None:
        """Stop it for sure (SIGTERM, then SIGKILL after 10 s), by PID."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _pid_of(registration: Path) -> object:
    try:
        return json.loads(registration.read_bytes()).get("pid")
    except (OSError, ValueError):
        return None  # being written, or just removed


@pytest.fixture
def job_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the jobs of ``apps.workflows`` record their runs (``$JOBQ_TEST_OUT``)."""
    path = tmp_path / "out"
    path.mkdir()
    monkeypatch.setenv("JOBQ_TEST_OUT", str(path))
    return path


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``jobq worker`` processes; every one still running is stopped at teardown.

    ``worker_process("apps.e2e", "--spool", str(spool), "--burst")`` runs the installed entry
    point with ``cwd=tests/`` (so ``apps.*`` modules import), output to a file in tmp_path.
    """
    started: list[WorkerProcess] = []

    def start(*args: str, cwd: Path = TESTS) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                jobq_command("worker", *args), cwd=cwd, stdout=out, stderr=subprocess.STDOUT
            )
        started.append(WorkerProcess(proc, log))
        return started[-1]

    yield start
    for worker in started:
        worker.kill()


DEAD_WORKER, DEAD_PID = "deadhost.999999.abcdef", 999999


def claimed_by_dead_worker(spool_path: Path, *, durable: bool = True) -> tuple[SpoolDir, Claimed]:
    """The spool's only pending job, claimed by a registered worker (lease 1 s) of a pid that
    does not run: ``DEAD_WORKER``. Its registration is ``spool.worker_file(DEAD_WORKER)``."""
    from jobq.spool import SpoolDir

    spool = SpoolDir(spool_path, durable=durable)
    spool.register_worker(DEAD_WORKER, {"id": DEAD_WORKER, "pid": DEAD_PID, "lease": 1.0})
    (pending,) = spool.pending_names("default")
    held = spool.claim(DEAD_WORKER, "default", pending)
    assert held is not None
    return spool, held


def die_mid_commit(spool_path: Path, staged: Callable[[dict[str, object]], bytes]) -> Path:
    """A worker dead a minute ago, halfway through committing the spool's only pending job.

    It claimed the job, staged ``staged(job)`` as its outcome record in ``tmp/``, made the
    commit's first rename (the job, bare, at ``done/default/ID.json``) and died before the
    second. Returns its registration file.
    """
    spool, held = claimed_by_dead_worker(spool_path, durable=False)
    job = json.loads(Path(held.path).read_bytes())
    tmp = spool_path / "tmp" / f"done@default@{held.job_id}.{DEAD_PID}.0f0f0f.rec"
    tmp.write_bytes(staged(job))
    os.rename(held.path, spool_path / "done" / "default" / f"{held.job_id}.json")
    registration = Path(spool.worker_file(DEAD_WORKER))
    long_ago = time.time() - 60
    os.utime(registration, (long_ago, long_ago))
    return registration


def wait_for(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)
