"""docs/spool-format.md is a working spec: its shell script enqueues jobs a real worker runs.

The script is taken verbatim from the page, so the page and the code cannot drift apart
without this test noticing. The files the Python API writes are checked against the page too.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from apps import e2e
from conftest import run_jobq

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import WorkerProcess

DOC = Path(__file__).resolve().parent.parent / "docs" / "spool-format.md"
PENDING_NAME = re.compile(r"(\d{5})-(\d{16})-([A-Za-z0-9_]{1,64})-(\d+)\.json")
SCHEDULED_NAME = re.compile(r"(\d{16})-(" + PENDING_NAME.pattern + ")")
JOB_KEYS = {
    "format", "id", "name", "queue", "args", "kwargs", "priority", "retries", "retry_delay",
    "timeout", "enqueued_at", "key", "attempts_base",
}  # fmt: skip
RECORD_KEYS = {"state", "attempts", "started_at", "finished_at", "result", "error", "worker"}


@pytest.fixture
def enqueue_script(tmp_path: Path) -> Path:
    """The shell script from docs/spool-format.md, written to a file."""
    text = DOC.read_text(encoding="utf-8")
    after = text.split("<!-- shell-enqueue -->", 1)[1]
    match = re.match(r"\s*```sh\n(.*?)```", after, re.DOTALL)
    assert match, "docs/spool-format.md lost its shell-enqueue script"
    script = tmp_path / "jobq-enqueue.sh"
    script.write_text(match.group(1), encoding="utf-8")
    return script


def shell_enqueue(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the script with ``/bin/sh``."""
    return subprocess.run(
        ["/bin/sh", str(script), *args], capture_output=True, text=True, timeout=30, check=False
    )


def job_status(spool: Path, job_id: str) -> dict[str, Any]:
    """``jobq status JOB_ID --json`` through the entry point."""
    done = run_jobq("status", job_id, "--json", "--spool", str(spool))
    assert done.returncode == 0, done.stderr
    info: dict[str, Any] = json.loads(done.stdout)
    return info


def test_shell_script_enqueues_a_job_a_worker_runs(
    spool_path: Path, enqueue_script: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    enqueued = shell_enqueue(enqueue_script, str(spool_path), "e2e.add", "[2, 3]")
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip()

    assert stat.S_IMODE(spool_path.stat().st_mode) == 0o700
    (pending,) = os.listdir(spool_path / "queues" / "default" / "pending")
    match = PENDING_NAME.fullmatch(pending)
    assert match
    assert (match.group(1), match.group(3), match.group(4)) == ("10000", job_id, "0")
    mode = (spool_path / "queues" / "default" / "pending" / pending).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert job_status(spool_path, job_id)["state"] == "pending"

    worker = worker_process("apps.e2e", "--spool", str(spool_path), "--burst")
    assert worker.wait() == 0, worker.output()
    info = job_status(spool_path, job_id)
    assert (info["state"], info["result"], info["name"], info["attempts"]) == (
        "done",
        5,
        "e2e.add",
        1,
    )
    assert os.listdir(spool_path / "tmp") == []


def test_shell_priority_queue_and_delay(
    spool_path: Path,
    tmp_path: Path,
    enqueue_script: Path,
    worker_process: Callable[..., WorkerProcess],
) -> None:
    order = tmp_path / "order.txt"
    first_in = e2e.record.enqueue_sync(str(order), "api, priority 0")
    args = json.dumps([str(order), "shell, priority 7"])
    urgent = shell_enqueue(enqueue_script, str(spool_path), "e2e.record", args, "cpu", "7")
    assert urgent.returncode == 0, urgent.stderr
    later = shell_enqueue(enqueue_script, str(spool_path), "e2e.stamp", "[]", "default", "0", "600")
    assert later.returncode == 0, later.stderr
    later_id = later.stdout.strip()
    (scheduled,) = os.listdir(spool_path / "queues" / "default" / "scheduled")
    assert SCHEDULED_NAME.fullmatch(scheduled)
    assert job_status(spool_path, later_id)["state"] == "scheduled"

    worker = worker_process(
        "apps.e2e", "--spool", str(spool_path), "--queues", "default,cpu", "--concurrency", "1",
        "--burst",
    )  # fmt: skip
    assert worker.wait() == 0, worker.output()
    assert order.read_text().splitlines() == ["shell, priority 7", "api, priority 0"]
    assert job_status(spool_path, urgent.stdout.strip())["queue"] == "cpu"
    assert first_in.result_sync(timeout=5) == "api, priority 0"
    assert job_status(spool_path, later_id)["state"] == "scheduled"  # not due for 10 minutes


@pytest.mark.parametrize(
    ("name", "queue"), [("../x", "default"), ("a/b", "default"), ("e2e.add", "../x")]
)
def test_shell_script_refuses_bad_names(
    spool_path: Path, enqueue_script: Path, name: str, queue: str
) -> None:
    refused = shell_enqueue(enqueue_script, str(spool_path), name, "[]", queue)
    assert refused.returncode == 2
    assert not spool_path.exists()


def test_shell_script_refuses_another_format(spool_path: Path, enqueue_script: Path) -> None:
    spool_path.mkdir()
    (spool_path / "jobq-spool.json").write_text('{"format": 2}')
    refused = shell_enqueue(enqueue_script, str(spool_path), "e2e.add", "[1, 2]")
    assert refused.returncode == 1
    assert "format" in refused.stderr
    assert list(spool_path.rglob("*.json")) == [spool_path / "jobq-spool.json"]


def test_shell_script_rewrites_an_empty_marker(spool_path: Path, enqueue_script: Path) -> None:
    e2e.add.enqueue_sync(1, 2)
    (spool_path / "jobq-spool.json").write_bytes(b"")  # a power cut's leftover of its creation
    done = shell_enqueue(enqueue_script, str(spool_path), "e2e.add", "[1, 2]")
    assert done.returncode == 0, done.stderr
    assert json.loads((spool_path / "jobq-spool.json").read_bytes()) == {"format": 1}
    assert job_status(spool_path, done.stdout.strip())["state"] == "pending"


def test_api_writes_what_the_doc_describes(spool_path: Path) -> None:
    high = e2e.add.options(priority=5).enqueue_sync(1, 2)
    low = e2e.square.options(priority=-9999).enqueue_sync(3)
    delayed = e2e.stamp.options(delay=600).enqueue_sync()

    assert json.loads((spool_path / "jobq-spool.json").read_bytes()) == {"format": 1}
    (high_name,) = os.listdir(spool_path / "queues" / "default" / "pending")
    (low_name,) = os.listdir(spool_path / "queues" / "cpu" / "pending")
    (delayed_name,) = os.listdir(spool_path / "queues" / "default" / "scheduled")
    for name, handle, key in ((high_name, high, "09995"), (low_name, low, "19999")):
        match = PENDING_NAME.fullmatch(name)
        assert match
        assert (match.group(1), match.group(3), match.group(4)) == (key, handle.id, "0")
    scheduled = SCHEDULED_NAME.fullmatch(delayed_name)
    assert scheduled
    assert scheduled.group(5) == delayed.id
    assert int(scheduled.group(1)) - int(scheduled.group(4)) == pytest.approx(600e6, abs=1e4)

    high_match = PENDING_NAME.fullmatch(high_name)
    assert high_match
    content = json.loads((spool_path / "queues" / "default" / "pending" / high_name).read_bytes())
    assert {"format", "id", "name"} <= set(content) <= JOB_KEYS
    assert (content["format"], content["id"], content["name"]) == (1, high.id, "e2e.add")
    assert (content["queue"], content["args"], content["priority"]) == ("default", [1, 2], 5)
    assert round(content["enqueued_at"] * 1e6) == int(high_match.group(2))


def test_outcome_records_have_the_documented_keys(
    spool_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    done = e2e.add.enqueue_sync(1, 2)
    failed = e2e.fail.enqueue_sync("documented")
    worker = worker_process("apps.e2e", "--spool", str(spool_path), "--burst")
    assert worker.wait() == 0, worker.output()
    for handle, state in ((done, "done"), (failed, "failed")):
        record = json.loads((spool_path / state / "default" / f"{handle.id}.json").read_bytes())
        assert set(record) <= JOB_KEYS | RECORD_KEYS
        assert set(record) >= RECORD_KEYS
        assert record["state"] == state
    error = json.loads((spool_path / "failed" / "default" / f"{failed.id}.json").read_bytes())
    assert set(error["error"]) == {"type", "message", "traceback"}
