"""Names become paths: bad queue and job names are refused at the API and the CLI.

Also: everything jobq creates in the spool is private (directories 0700, files 0600).
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

import pytest
from apps import e2e
from click.testing import CliRunner
from conftest import run_jobq
from hypothesis import given, settings
from hypothesis import strategies as st

import jobq
from jobq.cli import main

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import WorkerProcess

BAD_QUEUES = ["a/b", "..", "../x", "x/..", "", "-q", "q" * 65, "a b", "a\x00b", "a\\b", "ü", "a.b"]
BAD_JOB_NAMES = [
    "a/b", "..", "a..b", "../etc/passwd", "/abs", "1abc", "", "a b", "n" * 201, "a\nb", "a\\b",
]  # fmt: skip


def sample(x: int) -> int:
    """A function to decorate."""
    return x


@pytest.mark.parametrize("queue", BAD_QUEUES)
def test_bad_queue_is_refused_at_decoration(queue: str) -> None:
    with pytest.raises(jobq.InvalidName, match="queue name"):
        jobq.job(queue=queue)
    with pytest.raises(jobq.InvalidName):
        jobq.job(name="tests.names.sample", queue=queue)(sample)
    with pytest.raises(jobq.InvalidName):
        e2e.add.options(queue=queue)
    with pytest.raises(jobq.InvalidName):
        jobq.Worker(queues=["default", queue])


@pytest.mark.parametrize("name", BAD_JOB_NAMES)
def test_bad_job_name_is_refused_at_decoration(name: str) -> None:
    with pytest.raises(jobq.InvalidName, match="job name"):
        jobq.job(name=name)(sample)


def test_invalid_name_is_a_jobq_error_and_a_value_error() -> None:
    assert issubclass(jobq.InvalidName, jobq.JobqError)
    assert issubclass(jobq.InvalidName, ValueError)


def test_longest_valid_names_are_accepted() -> None:
    longest = jobq.job(name="n" * 200, queue="q" * 64)(sample)
    assert longest.name == "n" * 200
    dotted = jobq.job(name="billing.tasks:charge-v2", queue="mail_out-2")(sample)
    assert dotted(3) == 3


def test_bad_job_id_is_refused(spool_path: Path) -> None:
    with pytest.raises(jobq.InvalidName, match="job id"):
        jobq.Spool(spool_path).get("../../etc/passwd")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_accepted_queue_name_stays_inside_the_spool(queue: str) -> None:
    try:
        e2e.add.options(queue=queue)
    except jobq.InvalidName:
        return
    assert 1 <= len(queue) <= 64
    assert os.path.basename(queue) == queue
    assert ".." not in queue
    assert queue.isascii()
    assert queue.isprintable()
    assert not queue.startswith("-")


@pytest.mark.parametrize(
    "args",
    [
        ["enqueue", "../x"],
        ["enqueue", "a/b"],
        ["enqueue", "e2e.add", "--queue", "a/b"],
        ["enqueue", "e2e.add", "--queue", ".."],
        ["jobs", "--queue", ".."],
        ["retry", "--failed", "--queue", "a/b"],
        ["purge", "--queue", ".."],
        ["worker", "apps.e2e", "--queues", "default,../x"],
    ],
)
def test_cli_refuses_bad_names_with_exit_2(spool_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--spool", str(spool_path)])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("jobq: invalid ")
    assert not spool_path.exists()


@pytest.mark.parametrize(
    "args",
    [["status", "../../etc/passwd"], ["logs", "../x"], ["cancel", "a/b"], ["retry", "../x"]],
)
def test_cli_bad_job_ids_are_jobs_not_found(spool_path: Path, args: list[str]) -> None:
    # DESIGN.md: a job id that matches nothing is "not found" (1), whatever characters it has.
    e2e.add.enqueue_sync(1, 2)
    before = sorted(spool_path.rglob("*"))
    result = CliRunner().invoke(main, [*args, "--spool", str(spool_path)])
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert result.stderr == f"jobq: no job {args[1]!r} in spool {spool_path}\n"
    assert sorted(spool_path.rglob("*")) == before


def test_spool_is_private(spool_path: Path, worker_process: Callable[..., WorkerProcess]) -> None:
    e2e.add.options(key="private").enqueue_sync(1, 2)
    e2e.chatty_sync.enqueue_sync("secret")
    e2e.stamp.options(delay=600).enqueue_sync()  # beyond what --burst waits for
    e2e.fail.enqueue_sync("private failure")
    worker = worker_process(
        "apps.e2e", "--spool", str(spool_path), "--queues", "default,cpu", "--burst"
    )
    assert worker.wait() == 0, worker.output()
    assert run_jobq("status", "--spool", str(spool_path)).returncode == 0  # reads the clock
    assert (spool_path / "clock").exists()

    seen = {"dirs": 0, "files": 0}
    for root, dirs, files in os.walk(spool_path):
        for name in dirs:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            assert mode == 0o700, f"{os.path.join(root, name)} has mode {mode:o}"
            seen["dirs"] += 1
        for name in files:
            mode = stat.S_IMODE(os.stat(os.path.join(root, name)).st_mode)
            assert mode & 0o077 == 0, f"{os.path.join(root, name)} has mode {mode:o}"
            seen["files"] += 1
    assert stat.S_IMODE(spool_path.stat().st_mode) == 0o700
    assert seen["dirs"] >= 20
    assert seen["files"] >= 8


def test_job_ids_stay_unique_when_the_app_seeds_random_or_forks() -> None:
    """jobq's random bits come from a generator of its own, seeded afresh in a fork."""
    import random

    from jobq.model import new_job_id

    random.seed(7)
    first = new_job_id()
    random.seed(7)
    assert new_job_id()[11:] != first[11:]

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id must differ from the parent's next one
        os.write(write, new_job_id().encode())
        os._exit(0)
    os.close(write)
    mine = new_job_id()
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        theirs = pipe.read()
    assert theirs[11:] != mine[11:]


def test_quarantined_names_of_a_queue_called_like_a_state_tell_their_job() -> None:
    from jobq.layout import JobFileName, parse_quarantined

    running = "done@" + JobFileName(0, 1, "abc", 1).filename  # a job of the queue "done"
    assert (parse_quarantined(running).job_id, parse_quarantined(running).queue) == ("abc", "done")
    record = parse_quarantined("done@done@abc.json")  # a damaged record of that queue
    assert (record.job_id, record.queue, record.state) == ("abc", "done", "done")
