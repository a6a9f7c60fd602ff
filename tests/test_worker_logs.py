"""What a worker logs: one line per finished attempt on stderr, naming the job by name and id.

Most checks run a real ``jobq worker`` process with no flags (what a service's journal shows);
``--log-format json`` and ``--log-level`` are checked the same way. Fencing needs a reaper to
steal a running job, which a job can do to itself in-process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from typing import TYPE_CHECKING, Any

import pytest
from apps import observed
from conftest import run_jobq

import jobq
from jobq import supervisor
from jobq.logs import ATOMIC_WRITE, TEXT_FORMAT, ChildHandler, TextFormatter, tagged

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import WorkerProcess

# "2024-05-01 12:00:00,123 LEVEL logger: message"
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<logger>\S+): ")


def worker_lines(output: str, logger: str = "jobq.worker") -> list[tuple[str, str]]:
    """(level, message) of each line the given logger wrote."""
    found = []
    for line in output.splitlines():
        match = TEXT_LINE.match(line)
        if match and match["logger"] == logger:
            found.append((match["level"], line[match.end() :]))
    return found


def wait_until(check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_one_line_per_finished_attempt(
    spool_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    good = observed.ok.enqueue_sync(1)
    bad = observed.boom.enqueue_sync("kaput\nsecond line of the message")
    asked = observed.again.enqueue_sync()
    slow = observed.sleep.enqueue_sync(60)
    worker = worker_process("apps.observed", "--spool", str(spool_path))
    wait_until(lambda: slow.state_sync() == "running")
    assert slow.cancel_sync()
    with pytest.raises(jobq.JobCancelled):
        slow.result_sync(timeout=20)
    with pytest.raises(jobq.JobFailed):
        bad.result_sync(timeout=20)
    assert asked.result_sync(timeout=20) == "second time lucky"
    corrupt = spool_path / "queues" / "default" / "pending" / f"10000-{'1' * 16}-deadbeef-0.json"
    corrupt.write_text("{not json")
    wait_until(lambda: any((spool_path / "invalid").glob("*deadbeef*.reason")))
    wait_until(lambda: "quarantined" in worker.output())
    assert worker.stop() == 0, worker.output()

    lines = worker_lines(worker.output())
    print(*(f"{level} {message}" for level, message in lines), sep="\n")

    def one(pattern: str) -> tuple[str, str]:
        found = [(lvl, msg) for lvl, msg in lines if re.fullmatch(pattern, msg)]
        assert len(found) == 1, (pattern, lines)
        return found[0]

    assert one(rf"job observed\.ok\[{good.id}\] done in \d+\.\d{{3}} s")[0] == "INFO"
    level, _ = one(
        rf"job observed\.boom\[{bad.id}\] attempt 1 of 2 failed: apps\.observed\.Boom: "
        r"kaput second line of the message; retry in \d+\.\d\d s"
    )
    assert level == "WARNING"
    level, _ = one(
        rf"job observed\.boom\[{bad.id}\] failed: apps\.observed\.Boom: kaput second line of "
        r"the message \(attempt 2 of 2\)"
    )
    assert level == "ERROR"
    level, _ = one(
        rf"job observed\.again\[{asked.id}\] attempt 1 of 2 asked for a retry \(jobq\.Retry\); "
        r"retry in 0\.05 s"
    )
    assert level == "WARNING"
    assert one(rf"job observed\.again\[{asked.id}\] done in \d+\.\d{{3}} s")[0] == "INFO"
    cancelled = (
        rf"job observed\.sleep\[{slow.id}\] cancelled after \d+\.\d{{3}} s: cancel requested"
    )
    assert one(cancelled)[0] == "INFO"
    # A retried failure's traceback goes to the job's log only: one line per attempt here.
    assert "Traceback" not in worker.output()
    assert "retrying in" not in worker.output()
    assert "attempt 1 failed, retrying in" in bad.log_sync()
    level, message = one(r"quarantined \S+: corrupt job file: .*")
    assert level == "WARNING"
    (quarantined,) = [p for p in (spool_path / "invalid").iterdir() if p.suffix == ".json"]
    assert f"quarantined {quarantined}: corrupt job file: not valid JSON" in message


def test_json_log_lines_for_log_shippers(
    spool_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    good = observed.ok.enqueue_sync(2)
    bad = observed.boom.enqueue_sync("json please")
    worker = worker_process(
        "apps.observed", "--spool", str(spool_path), "--burst", "--log-format", "json"
    )
    assert worker.wait() == 0, worker.output()
    records = [json.loads(line) for line in worker.output().splitlines()]  # every line is JSON
    for record in records:
        assert {"ts", "level", "logger", "message"} <= set(record)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["ts"])

    def event(name: str, kind: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = [
            r for r in records if r.get("job_name") == name and r.get("event") == kind
        ]
        assert len(found) == 1, (name, kind, records)
        return found[0]

    done = event("observed.ok", "done")
    assert (done["level"], done["logger"], done["job_id"]) == ("INFO", "jobq.worker", good.id)
    assert (done["queue"], done["attempt"], done["max_attempts"]) == ("default", 1, 1)
    assert done["duration"] >= 0
    assert done["message"].startswith(f"job observed.ok[{good.id}] done in ")
    retry = event("observed.boom", "retry")
    assert retry["level"] == "WARNING"
    assert retry["delay"] > 0
    failed = event("observed.boom", "failed")
    assert (failed["level"], failed["job_id"], failed["attempt"]) == ("ERROR", bad.id, 2)
    assert (failed["error_type"], failed["error_message"]) == ("apps.observed.Boom", "json please")
    # What a job logs itself names the job too; jobq's own notes (the retried failure's
    # traceback) stay in the job's log.
    own = [r for r in records if r["logger"] == "jobq.job.observed.boom"]
    assert [(r["job_id"], r["job_name"], r["attempt"]) for r in own] == [
        (bad.id, "observed.boom", 1),
        (bad.id, "observed.boom", 2),
    ]
    assert [r["message"] for r in own] == ["about to fail: json please"] * 2


def test_log_level(spool_path: Path, worker_process: Callable[..., WorkerProcess]) -> None:
    observed.ok.enqueue_sync(3)
    bad = observed.boom.enqueue_sync("still shown")
    worker = worker_process(
        "apps.observed", "--spool", str(spool_path), "--burst", "--log-level", "warning"
    )
    assert worker.wait() == 0, worker.output()
    levels = {level for level, _ in worker_lines(worker.output())}
    assert levels == {"WARNING", "ERROR"}
    assert f"job observed.boom[{bad.id}] failed" in worker.output()
    assert " done in " not in worker.output()

    wrong = run_jobq("worker", "apps.observed", "--log-level", "chatty", "--spool", str(spool_path))
    assert wrong.returncode == 2
    assert "--log-level" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_a_worker_on_a_new_spool_says_so_first(
    tmp_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    fresh = tmp_path / "typo-spool"
    worker = worker_process("apps.observed", "--spool", str(fresh), "--burst")
    assert worker.wait() == 0, worker.output()
    first = worker.output().splitlines()[0]
    assert f"on {fresh} " in first
    assert "no spool was there: creating a new one" in first
    again = worker_process("apps.observed", "--spool", str(fresh), "--burst")
    assert again.wait() == 0, again.output()
    assert "creating a new one" not in again.output()


@pytest.mark.anyio
async def test_a_fenced_attempt_is_logged(
    spool_path: Path, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    handle = await observed.fence_me.enqueue(str(spool_path))
    with caplog.at_level(logging.INFO, logger="jobq.worker"):
        await jobq.Worker(jobq.Spool(spool_path)).run(burst=True)
    assert await handle.result(timeout=5) == 2  # the second attempt's outcome stands
    messages = [r.getMessage() for r in caplog.records if r.name == "jobq.worker"]
    fenced = [m for m in messages if "outcome discarded" in m]
    assert fenced == [
        f"job observed.fence_me[{handle.id}]: outcome discarded, another attempt owns the job "
        "now (this worker's lease expired)"
    ]
    assert [m for m in messages if " done in " in m] == [
        m for m in messages if m.startswith(f"job observed.fence_me[{handle.id}] done in ")
    ]
    assert len([m for m in messages if " done in " in m]) == 1


def test_a_jobs_log_holds_its_own_lines_not_the_workers(spool_path: Path) -> None:
    """The worker's line about a job is logged in the job's context after its log was
    flushed: it must go to the worker's log only, never into the job's buffer."""
    from jobq.context import CaptureHandler, new_context

    async def no_progress(_: object) -> None:
        return None

    ctx = new_context("j1", "tests.logs.job", "default", 1, no_progress)
    token = ctx.activate()
    handler = CaptureHandler()
    try:
        for name, message in (("jobq.job.tests.logs.job", "mine"), ("jobq.worker", "done")):
            handler.emit(logging.LogRecord(name, logging.INFO, __file__, 1, message, None, None))
    finally:
        ctx.deactivate(token)
    assert [line.split(": ", 1)[1] for line in ctx.lines] == ["mine\n"]


def test_a_childs_handler_tags_its_lines_and_leaves_long_ones_to_the_relay(
    capsys: pytest.CaptureFixture[str],
) -> None:
    direct = io.StringIO()
    handler = ChildHandler(direct, 3)
    handler.setFormatter(TextFormatter())
    logger = logging.getLogger("tests.child_handler")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("two\nlines")
        logger.warning("x" * ATOMIC_WRITE)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    short = direct.getvalue().splitlines()
    assert len(short) == 2
    assert TEXT_LINE.match(short[0].removeprefix("[child 3] "))
    assert short[0].startswith("[child 3] ")
    assert short[0].endswith(": two")
    assert short[1] == "[child 3] lines"
    relayed = capsys.readouterr().err.splitlines()  # the supervisor tags these as it relays
    assert len(relayed) == 1
    assert relayed[0].endswith("x" * ATOMIC_WRITE)
    assert TEXT_LINE.match(relayed[0])
    # A JSON line stays one object, its first key the child's number.
    line = tagged('{"ts":"t","message":"m"}', 2)
    assert list(json.loads(line).items()) == [("child", 2), ("ts", "t"), ("message", "m")]


def test_the_text_format_writes_the_time_as_logging_does() -> None:
    ours, theirs = TextFormatter(), logging.Formatter(TEXT_FORMAT)
    base = time.time()
    for offset in (0.0, 0.001, 0.999, 1.0, 1.5, 61.25, 3600.0):
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", (), None)
        record.created, record.msecs = base + offset, ((base + offset) % 1) * 1000
        assert ours.format(record) == theirs.format(record)


def test_a_child_takes_the_log_hand_over_only_where_it_is_what_was_handed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fd = os.open(tmp_path / "supervisor-stderr", os.O_WRONLY | os.O_CREAT)  # the stream closes it
    found = os.fstat(fd)
    monkeypatch.setenv(supervisor.CHILD_ENV, "4")
    monkeypatch.setenv(supervisor.LOG_FD_ENV, f"{fd}:{found.st_dev}:{found.st_ino + 1}")
    assert supervisor.child_log_stream() is None  # another file behind that number now
    assert supervisor.LOG_FD_ENV not in os.environ
    monkeypatch.setenv(supervisor.LOG_FD_ENV, f"{fd}:{found.st_dev}:{found.st_ino}")
    os.set_inheritable(fd, True)
    got = supervisor.child_log_stream()
    assert got is not None
    assert got[0] == 4
    assert not os.get_inheritable(fd)  # a job's subprocesses do not get it
    assert supervisor.LOG_FD_ENV not in os.environ
    got[1].write("line\n")
    got[1].close()
    assert (tmp_path / "supervisor-stderr").read_text() == "line\n"
