"""The command line: exit codes, one-line errors, and each command's basics.

Most cases run through ``click.testing.CliRunner``; the exit-code contract is checked again
through the installed ``jobq`` entry point, as a shell script would see it.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from apps import e2e
from click.testing import CliRunner, Result
from conftest import run_jobq

import jobq
from jobq.cli import main

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import WorkerProcess

UNKNOWN_ID = "0123456789abcdef"


def cli(spool: Path, *args: str) -> Result:
    """Run ``jobq ARGS --spool SPOOL`` in-process."""
    return CliRunner().invoke(main, [*args, "--spool", str(spool)])


def assert_one_line_error(result: Result | subprocess.CompletedProcess[str], code: int) -> None:
    """The command failed with ``code``, one line on stderr and nothing on stdout."""
    exit_code = result.exit_code if isinstance(result, Result) else result.returncode
    assert exit_code == code, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("jobq: ")


def run_burst(spool: Path) -> None:
    """Run every runnable job with an in-process burst worker."""
    worker = jobq.Worker(jobq.Spool(spool), queues=["default", "cpu"])
    anyio.run(functools.partial(worker.run, burst=True))


def status(spool: Path, job_id: str) -> dict[str, Any]:
    """``jobq status JOB_ID --json`` as a dict."""
    result = cli(spool, "status", job_id, "--json")
    info: dict[str, Any] = json.loads(result.stdout)
    # The job is printed whatever its state; "job failed" is exit 1.
    assert result.exit_code == (1 if info["state"] == "failed" else 0), result.stderr
    return info


# -- exit codes ----------------------------------------------------------------------------


def test_unknown_job_exits_1_with_one_line(spool_path: Path) -> None:
    e2e.add.enqueue_sync(1, 2)  # the spool exists; the id does not
    for command in ("status", "logs", "cancel", "retry"):
        result = cli(spool_path, command, UNKNOWN_ID)
        assert_one_line_error(result, 1)
        assert UNKNOWN_ID in result.stderr
    assert_one_line_error(cli(spool_path, "status", UNKNOWN_ID, "--json"), 1)


def test_unknown_job_through_the_entry_point(spool_path: Path) -> None:
    done = run_jobq("status", UNKNOWN_ID, "--spool", str(spool_path))
    assert_one_line_error(done, 1)


@pytest.mark.parametrize(
    "args",
    [
        ["status", "--bogus"],
        ["no-such-command"],
        ["jobs", "--state", "sleeping"],
        ["jobs", "--limit", "0"],
        ["retry"],
        ["retry", UNKNOWN_ID, "--failed"],
        ["cancel"],
        ["logs"],
        ["enqueue"],
        ["enqueue", "e2e.add", "--args", "[1,"],
        ["enqueue", "e2e.add", "--args", '{"x": 1}'],
        ["enqueue", "e2e.add", "--kwargs", "[1]"],
        ["enqueue", "e2e.add", "--delay", "-1"],
        ["enqueue", "e2e.add", "--priority", "10000"],
        ["purge", "--older-than", "soon"],
        ["worker"],
        ["worker", "apps.e2e", "--backend", "curio"],
        ["worker", "apps.e2e", "--concurrency", "0"],
    ],
)
def test_bad_usage_exits_2(spool_path: Path, args: list[str]) -> None:
    result = cli(spool_path, *args)
    assert_one_line_error(result, 2)
    assert "--help" in result.stderr  # where the usage is
    assert not spool_path.exists()  # nothing was written


def test_bad_usage_through_the_entry_point(spool_path: Path) -> None:
    done = run_jobq("status", "--bogus", "--spool", str(spool_path))
    assert_one_line_error(done, 2)
    assert "--bogus" in done.stderr
    bad_json = run_jobq("enqueue", "e2e.add", "--args", "[1,", "--spool", str(spool_path))
    assert_one_line_error(bad_json, 2)
    assert "--args" in bad_json.stderr
    bad_age = run_jobq("purge", "--older-than", "soon", "--spool", str(spool_path))
    assert_one_line_error(bad_age, 2)
    assert "--older-than" in bad_age.stderr


def test_entry_point_basics(spool_path: Path) -> None:
    e2e.add.enqueue_sync(1, 2)  # the spool exists
    version = run_jobq("--version")
    assert version.returncode == 0
    assert "0.1.0" in version.stdout
    as_module = subprocess.run(
        [sys.executable, "-m", "jobq", "status", "--json", "--spool", str(spool_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert as_module.returncode == 0, as_module.stderr
    stats = json.loads(as_module.stdout)
    assert (stats["spool"], stats["workers"], stats["invalid"]) == (str(spool_path), [], 0)
    assert stats["queues"]["default"]["pending"] == 1


def test_worker_with_an_app_that_does_not_import(spool_path: Path) -> None:
    done = run_jobq("worker", "no_such_app_module", "--spool", str(spool_path), "--burst")
    assert_one_line_error(done, 2)
    assert "no_such_app_module" in done.stderr


# -- status --------------------------------------------------------------------------------


def test_status_of_a_missing_spool_says_so_without_creating_it(spool_path: Path) -> None:
    for args in (["status", "--json"], ["status"]):
        result = cli(spool_path, *args)
        assert_one_line_error(result, 1)
        assert result.stderr.startswith(f"jobq: no spool at {spool_path}")
    assert not spool_path.exists()


def test_status_table_is_aligned(spool_path: Path) -> None:
    e2e.add.enqueue_sync(1, 2)
    for n in range(12):
        e2e.square.enqueue_sync(n)
    result = cli(spool_path, "status")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("queue"))
    table = lines[header : header + 3]
    assert table[0].split() == [
        "queue", "pending", "scheduled", "waiting", "running", "done", "failed", "cancelled",
    ]  # fmt: skip
    assert table[1].split() == ["cpu", "12", "0", "0", "0", "0", "0", "0"]
    assert table[2].split() == ["default", "1", "0", "0", "0", "0", "0", "0"]
    assert len({len(line) for line in table}) == 1  # columns line up
    assert "workers: 0 live" in result.stdout


def test_status_of_one_job_human_output(spool_path: Path) -> None:
    handle = e2e.add.enqueue_sync(4, 5)
    result = cli(spool_path, "status", handle.id)
    assert result.exit_code == 0, result.stderr
    assert handle.id in result.stdout
    assert "pending" in result.stdout
    assert "e2e.add" in result.stdout


# -- enqueue -------------------------------------------------------------------------------


def test_enqueue_by_name_then_run(
    spool_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    result = cli(
        spool_path, "enqueue", "e2e.add", "--args", "[1]", "--kwargs", '{"y": 41}',
        "--queue", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    job_id = result.stdout.strip()
    assert result.stdout == job_id + "\n"
    pending = os.listdir(spool_path / "queues" / "cpu" / "pending")
    assert len(pending) == 1
    assert job_id in pending[0]
    info = status(spool_path, job_id)
    assert (info["name"], info["queue"], info["state"]) == ("e2e.add", "cpu", "pending")

    worker = worker_process("apps.e2e", "--spool", str(spool_path), "--queues", "cpu", "--burst")
    assert worker.wait() == 0, worker.output()
    assert status(spool_path, job_id)["result"] == 42


MAIL_APP = """
import jobq

import os

# An app that prints while importing: stdout must still hold the job id alone.
print("mailapp imported")
os.write(1, b"mailapp wrote\\n")


@jobq.job(queue="mail", priority=3, retries=2, retry_delay=0.01)
def send(to: str) -> str:
    return "sent to " + to
"""


def test_enqueue_applies_the_jobs_registered_options(spool_path: Path, tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "mailapp.py").write_text(MAIL_APP)
    spool = ("--spool", str(spool_path))
    made = run_jobq("enqueue", "mailapp.send", "--args", '["ann"]', *spool, cwd=app)
    assert made.returncode == 0, made.stderr
    assert sorted(made.stderr.splitlines()) == ["mailapp imported", "mailapp wrote"]
    job_id = made.stdout.strip()
    assert made.stdout == job_id + "\n"
    (pending,) = (spool_path / "queues" / "mail" / "pending").iterdir()
    content = json.loads(pending.read_bytes())
    assert (content["id"], content["queue"], content["priority"], content["retries"]) == (
        job_id, "mail", 3, 2,
    )  # fmt: skip
    assert content["retry_delay"] == 0.01
    # What the command line says wins over the job's options.
    told = run_jobq(
        "enqueue", "mailapp.send", "--args", '["bob"]', "--queue", "default",
        "--priority", "0", "--retries", "0", *spool, cwd=app,
    )  # fmt: skip
    assert told.returncode == 0, told.stderr
    (other,) = (spool_path / "queues" / "default" / "pending").iterdir()
    content = json.loads(other.read_bytes())
    assert (content["queue"], content["priority"], content["retries"]) == ("default", 0, 0)

    # The app's worker serves the app's queue, where the job is.
    ran = run_jobq("worker", "mailapp", "--burst", *spool, cwd=app)
    assert ran.returncode == 0, ran.stderr
    assert status(spool_path, job_id)["result"] == "sent to ann"


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("import os\nos.environ['NO_SUCH_SETTING']\n", "app module 'brokenapp' raised KeyError"),
        ("import sys\nsys.exit('no config')\n", "app module 'brokenapp' called sys.exit"),
        ("import sys\nsys.exit(0)\n", "app module 'brokenapp' called sys.exit(0)"),
        ("import jobq\n\n@jobq.job\ndef sned(): ...\n", "module 'brokenapp' registers no job"),
    ],
)
def test_enqueue_whose_module_fails_says_so_and_enqueues(
    spool_path: Path, tmp_path: Path, source: str, says: str
) -> None:
    (tmp_path / "brokenapp.py").write_text(source)
    made = run_jobq(
        "enqueue", "brokenapp.send", "--kwargs", '{"self": 1}', "--spool", str(spool_path),
        cwd=tmp_path,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (note,) = made.stderr.splitlines()
    assert note.startswith(f"jobq: note: {says}"), note
    assert note.endswith("enqueued without its @job options")
    job_id = made.stdout.strip()
    info = status(spool_path, job_id)
    assert (info["name"], info["queue"]) == ("brokenapp.send", "default")
    job_file = next((spool_path / "queues" / "default" / "pending").iterdir())
    assert json.loads(job_file.read_bytes())["kwargs"] == {"self": 1}


def test_enqueue_checks_its_options_before_importing(spool_path: Path, tmp_path: Path) -> None:
    (tmp_path / "loud.py").write_text("print('imported')\n")
    made = run_jobq("enqueue", "loud.send", "--queue", "a/b", "--spool", str(spool_path),
                    cwd=tmp_path)  # fmt: skip
    assert_one_line_error(made, 2)
    assert "imported" not in made.stderr


def test_enqueue_with_delay_and_unregistered_name(spool_path: Path) -> None:
    # No module registers this name: it is accepted, with the defaults and the options given.
    result = cli(spool_path, "enqueue", "billing.tasks.charge", "--delay", "30")
    assert result.exit_code == 0, result.stderr
    job_id = result.stdout.strip()
    assert status(spool_path, job_id)["state"] == "scheduled"
    scheduled = os.listdir(spool_path / "queues" / "default" / "scheduled")
    assert [job_id in name for name in scheduled] == [True]


# -- jobs, logs, cancel, retry, purge ------------------------------------------------------


def test_jobs_lists_in_run_order(spool_path: Path) -> None:
    low = e2e.add.enqueue_sync(1, 1)
    high = e2e.add.options(priority=5).enqueue_sync(2, 2)
    other = e2e.square.enqueue_sync(3)
    result = cli(spool_path, "jobs", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert {r["id"] for r in rows} == {low.id, high.id, other.id}
    default_rows = [r["id"] for r in rows if r["queue"] == "default"]
    assert default_rows == [high.id, low.id]
    assert all(r["state"] == "pending" for r in rows)

    limited = json.loads(
        cli(spool_path, "jobs", "--queue", "default", "--limit", "1", "--json").stdout
    )
    assert [r["id"] for r in limited] == [high.id]
    human = cli(spool_path, "jobs", "--state", "pending", "--queue", "cpu")
    assert human.exit_code == 0
    assert other.id in human.stdout
    assert low.id not in human.stdout
    assert json.loads(cli(spool_path, "jobs", "--state", "done", "--json").stdout) == []


def test_logs_of_a_job(spool_path: Path) -> None:
    chatty = e2e.chatty.enqueue_sync("plum")
    quiet = e2e.add.enqueue_sync(1, 1)
    empty = cli(spool_path, "logs", quiet.id)
    assert (empty.exit_code, empty.stdout) == (0, "")
    run_burst(spool_path)
    result = cli(spool_path, "logs", chatty.id)
    assert result.exit_code == 0, result.stderr
    assert "job logger says plum" in result.stdout
    followed = cli(spool_path, "logs", chatty.id, "--follow")  # finished: returns at once
    assert followed.stdout == result.stdout


def test_cancel(spool_path: Path) -> None:
    first = e2e.add.enqueue_sync(1, 1)
    later = e2e.stamp.options(delay=60).enqueue_sync()
    result = cli(spool_path, "cancel", first.id, later.id)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"{first.id} cancelled", f"{later.id} cancelled"]
    assert status(spool_path, first.id)["state"] == "cancelled"
    assert status(spool_path, later.id)["state"] == "cancelled"
    with pytest.raises(jobq.JobCancelled):
        first.result_sync(timeout=1)

    again = cli(spool_path, "cancel", first.id, UNKNOWN_ID)
    assert again.exit_code == 1
    assert again.stdout == f"{first.id} already finished\n"
    assert again.stderr.count("\n") == 1
    assert UNKNOWN_ID in again.stderr


def test_retry(spool_path: Path) -> None:
    bad = e2e.fail.enqueue_sync("first try")
    good = e2e.add.enqueue_sync(1, 1)
    run_burst(spool_path)
    assert status(spool_path, bad.id)["state"] == "failed"

    result = cli(spool_path, "retry", bad.id, good.id)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{bad.id} requeued",
        f"{good.id} not dead (nothing to retry)",
    ]
    info = status(spool_path, bad.id)
    assert (info["state"], info["attempts"]) == ("pending", 1)

    run_burst(spool_path)
    assert status(spool_path, bad.id)["attempts"] == 2
    everything = cli(spool_path, "retry", "--failed")
    assert (everything.exit_code, everything.stdout) == (0, "requeued 1 failed job(s)\n")
    assert status(spool_path, bad.id)["state"] == "pending"


def test_purge(spool_path: Path) -> None:
    handles = [e2e.chatty.enqueue_sync(str(n)) for n in range(3)]
    failing = e2e.fail.enqueue_sync("stays")
    run_burst(spool_path)

    kept = cli(spool_path, "purge", "--older-than", "1h")
    assert (kept.exit_code, kept.stdout) == (0, "removed 0 record(s)\n")
    result = cli(spool_path, "purge", "--state", "done", "--older-than", "0s")
    assert (result.exit_code, result.stdout) == (0, "removed 3 record(s)\n")
    for handle in handles:
        assert_one_line_error(cli(spool_path, "status", handle.id), 1)
        assert not (spool_path / "logs" / f"{handle.id}.log").exists()
    assert status(spool_path, failing.id)["state"] == "failed"
