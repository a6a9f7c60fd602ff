"""``jobq worker --processes N``: real supervisor and child processes, real signals.

A broken app stops the supervisor at once with exit 2 and the child's one-line error; a child
that keeps dying comes back after growing delays, each logged; a graceful stop exits 0 whatever
crashed before it; every log line says which child wrote it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from typing import TYPE_CHECKING, Any

import pytest
from apps import ops
from conftest import TESTS, jobq_command

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

STARTED = re.compile(r"child (\d+) started \(pid (\d+)\)")


class Supervisor:
    """A ``jobq worker --processes N`` process whose stderr goes to a file."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc = proc
        self.log = log

    def output(self) -> str:
        """What the supervisor (and the children, through it) wrote so far."""
        return self.log.read_text(errors="replace")

    def children(self) -> dict[int, list[int]]:
        """Child number -> the pids it ran under, in order, from the "started" lines."""
        found: dict[int, list[int]] = {}
        for number, pid in STARTED.findall(self.output()):
            found.setdefault(int(number), []).append(int(pid))
        return found

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
        """Poll ``condition`` until it holds; fail with the output if it does not in time."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; output:\n{self.output()}")
            if self.proc.poll() is not None:
                pytest.fail(f"supervisor exited ({self.proc.returncode}):\n{self.output()}")
            time.sleep(0.02)


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Callable[..., Supervisor]]:
    """Start ``jobq worker ... --processes N``; everything still running is killed at teardown.

    The children have process groups of their own, so they are killed by pid too.
    """
    started: list[Supervisor] = []

    def start(*args: str) -> Supervisor:
        log = tmp_path / f"supervisor-{len(started)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                jobq_command("worker", *args), cwd=TESTS, stdout=out, stderr=subprocess.STDOUT
            )
        started.append(Supervisor(proc, log))
        return started[-1]

    yield start
    for sup in started:
        if sup.proc.poll() is None:
            sup.proc.kill()
            sup.proc.wait()
        for pids in sup.children().values():
            for pid in pids:
                _kill_if_alive(pid)


def _kill_if_alive(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("app", "error"),
    [
        ("apps.no_such_app", "cannot import app module 'apps.no_such_app'"),
        ("apps.broken", "RuntimeError while importing (at "),
        ("apps.exits", "called sys.exit('no config') while importing (at "),
    ],
)
def test_an_app_that_does_not_import_exits_2_at_once_with_one_line(
    tmp_path: Path, supervisor: Callable[..., Supervisor], app: str, error: str
) -> None:
    started = time.monotonic()
    sup = supervisor(app, "--processes", "3", "--spool", str(tmp_path / "spool"))
    assert sup.proc.wait(timeout=30) == 2
    assert time.monotonic() - started < 10  # no restart loop, no waiting out a back-off
    lines = sup.output().strip().splitlines()
    assert lines[-1].startswith("jobq: "), lines
    assert error in lines[-1], lines
    if app == "apps.broken":
        assert lines[-1].endswith(": the database URL is not configured")
    # One line for the error however many children met it; no traceback, no restart.
    assert sum(error in line for line in lines) == 1, lines
    assert "Traceback" not in sup.output()
    assert "restarting" not in sup.output()
    assert all(not _alive(pid) for pids in sup.children().values() for pid in pids)


def test_a_child_that_keeps_dying_is_restarted_with_growing_delays(
    spool_path: Path, supervisor: Callable[..., Supervisor]
) -> None:
    sup = supervisor("apps.ops", "--processes", "2", "--spool", str(spool_path), "--lease", "2")
    sup.wait_for(lambda: len(sup.children()) == 2, "two children")
    # Kill child 1 as soon as each of its processes starts: it keeps dying young.
    for kills in range(1, 4):
        os.kill(sup.children()[1][-1], signal.SIGKILL)
        runs = kills + 1
        sup.wait_for(lambda: len(sup.children()[1]) == runs, f"restart {kills}")  # noqa: B023

    sup.wait_for(lambda: sup.output().count(" serving ") == 2, "both children serving")
    out = sup.output()
    restarts = re.findall(
        r"child 1 \(pid (\d+)\) was killed by SIGKILL after [\d.]+ s; restarting it in ([\d.]+) s",
        out,
    )
    assert [float(delay) for _, delay in restarts] == [0.5, 1.0, 2.0], out
    assert [int(pid) for pid, _ in restarts] == sup.children()[1][:3]
    # The other child was left alone, and both children's own lines carry their number.
    assert len(sup.children()[2]) == 1
    for number in (1, 2):
        assert re.search(rf"^\[child {number}\] .*worker \S+ serving", out, re.MULTILINE), out

    # The children that run now do the work.
    handles = [ops.pid.enqueue_sync() for _ in range(6)]
    ran_in = {h.result_sync(timeout=30) for h in handles}
    assert ran_in <= {sup.children()[1][-1], sup.children()[2][-1]}

    # A graceful stop after all those crashes still exits 0 and leaves no child behind.
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(timeout=30) == 0, sup.output()
    last = [pids[-1] for pids in sup.children().values()]
    assert not any(_alive(pid) for pid in last)
    # They deregistered (a killed child may have registered before it died: the lease reaps it).
    registered = [p.name.split(".")[-3] for p in (spool_path / "workers").glob("*.json")]
    assert not {str(pid) for pid in last} & set(registered)


def test_log_lines_and_other_stderr_both_name_their_child(
    spool_path: Path, supervisor: Callable[..., Supervisor]
) -> None:
    # Log lines go straight to the supervisor's stderr, tagged by the child; anything else a
    # child writes there is relayed and tagged by the supervisor.
    sup = supervisor("apps.ops", "--processes", "2", "--spool", str(spool_path))
    sup.wait_for(lambda: sup.output().count(" serving ") == 2, "two workers serving")
    handles = [ops.say.enqueue_sync(f"said {i}") for i in range(8)]
    ran: list[list[Any]] = [h.result_sync(timeout=30) for h in handles]
    assert [hand_over for _, hand_over, _ in ran] == [None] * 8  # no subprocess inherits it
    assert all(fd not in (None, 2) for _, _, fd in ran)  # the log handler writes elsewhere
    number_of = {pid: n for n, pids in sup.children().items() for pid in pids}
    for i, (handle, (pid, _, _)) in enumerate(zip(handles, ran, strict=True)):
        tag = re.escape(f"[child {number_of[pid]}] ")
        sup.wait_for(lambda: f"[{handle.id}] done" in sup.output(), "the done line")  # noqa: B023
        out = sup.output()
        assert re.search(rf"^{tag}said {i}$", out, re.MULTILINE), out
        assert re.search(rf"^{tag}\S+ \S+ INFO jobq.worker: job ops.say\[{handle.id}\] done", out,
                         re.MULTILINE), out  # fmt: skip
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(timeout=30) == 0, sup.output()


def test_sigterm_lets_running_jobs_finish_and_exits_0(
    spool_path: Path, supervisor: Callable[..., Supervisor]
) -> None:
    sup = supervisor("apps.ops", "--processes", "2", "--spool", str(spool_path))
    sup.wait_for(lambda: sup.output().count(" serving ") == 2, "two workers serving")
    naps = [ops.nap.enqueue_sync(1.0) for _ in range(2)]
    sup.wait_for(lambda: len(list((spool_path / "running").glob("*/*"))) == 2, "both naps running")
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(timeout=30) == 0, sup.output()
    assert [h.result_sync(timeout=1) for h in naps] == [1.0, 1.0]
    assert "restarting" not in sup.output()


def test_a_second_signal_stops_at_once_with_exit_1(
    spool_path: Path, supervisor: Callable[..., Supervisor]
) -> None:
    sup = supervisor("apps.ops", "--processes", "2", "--spool", str(spool_path))
    sup.wait_for(lambda: sup.output().count(" serving ") == 2, "two workers serving")
    ops.nap.enqueue_sync(60.0)
    sup.wait_for(lambda: len(list((spool_path / "running").glob("*/*"))) == 1, "the nap running")
    sup.proc.send_signal(signal.SIGINT)
    sup.wait_for(lambda: "finishing running jobs" in sup.output(), "the graceful stop")
    sup.proc.send_signal(signal.SIGINT)
    assert sup.proc.wait(timeout=15) == 1, sup.output()
    assert not any(_alive(pids[-1]) for pids in sup.children().values())


def test_burst_children_finish_and_json_log_lines_name_their_child(
    spool_path: Path, supervisor: Callable[..., Supervisor]
) -> None:
    handles = [ops.pid.enqueue_sync() for _ in range(20)]
    sup = supervisor(
        "apps.ops", "--processes", "2", "--burst", "--log-format", "json",
        "--spool", str(spool_path),
    )  # fmt: skip
    assert sup.proc.wait(timeout=60) == 0, sup.output()
    pids = {pid for runs in sup.children().values() for pid in runs}
    assert {h.result_sync(timeout=1) for h in handles} <= pids
    lines = [json.loads(line) for line in sup.output().splitlines()]
    serving = [line for line in lines if " serving " in line["message"]]
    assert sorted(line["child"] for line in serving) == [1, 2]
    assert all("child" not in line for line in lines if line["logger"] == "jobq.supervisor"
               and line["message"].startswith("child "))  # fmt: skip
