"""Rolling deploys: a worker that meets a job name it does not know leaves it to one that does.

``apps.ops`` is the old release of an app and ``apps.ops_new`` the new one, which adds
``ops.new_job``. An old worker puts such a job back (not counted as an attempt) until its
``--unknown-grace`` runs out, then fails it with ``jobq.UnknownJob``; in burst mode at once.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import anyio
import pytest
from apps import ops_new
from click.testing import CliRunner
from conftest import TESTS, run_jobq

import jobq
from jobq.cli import main as cli

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import WorkerProcess


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def _record(spool: Path, state: str, job_id: str) -> dict[str, object]:
    data = json.loads((spool / state / "default" / f"{job_id}.json").read_bytes())
    assert isinstance(data, dict)
    return data


def test_an_old_worker_leaves_a_new_job_to_a_new_worker(
    spool_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    old = worker_process("apps.ops", "--spool", str(spool_path))
    handle = ops_new.new_job.enqueue_sync(21)
    # The old worker meets the job, says so, and puts it back rather than failing it.
    _wait_for(lambda: "is not registered in this worker" in old.output(), "the old worker")
    assert "ops.new_job" in old.output()
    assert handle.id in old.output()
    info = handle.info_sync()
    assert info["state"] in ("scheduled", "pending", "running"), info
    assert not (spool_path / "failed" / "default" / f"{handle.id}.json").exists()

    new = worker_process("apps.ops_new", "--spool", str(spool_path))
    assert handle.result_sync(timeout=30) == 42
    record = _record(spool_path, "done", handle.id)
    assert record["attempts"] == 1  # the put-backs were not attempts
    assert f".{new.pid}." in str(record["worker"])
    assert old.stop() == 0
    assert new.stop() == 0


def test_burst_mode_fails_an_unknown_job_at_once(spool_path: Path) -> None:
    handle = ops_new.new_job.enqueue_sync(21)
    started = time.monotonic()
    done = run_jobq("worker", "apps.ops", "--burst", "--spool", str(spool_path), cwd=TESTS)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 20
    with pytest.raises(jobq.JobFailed) as failed:
        handle.result_sync(timeout=1)
    assert failed.value.error_type == "jobq.UnknownJob"
    assert "'ops.new_job'" in failed.value.error_message
    assert "import the module" in failed.value.error_message
    assert _record(spool_path, "failed", handle.id)["attempts"] == 1


@pytest.mark.anyio
async def test_an_unknown_job_fails_once_its_grace_is_over(
    spool_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The command blocks, as a shell's would: in a thread, off this test's event loop.
    enqueued = await anyio.to_thread.run_sync(
        CliRunner().invoke, cli, ["enqueue", "not.in.this.app", "--spool", str(spool_path)]
    )
    assert enqueued.exit_code == 0, enqueued.output
    handle = jobq.Spool(spool_path).get(enqueued.output.strip())
    worker = jobq.Worker(spool_path, queues=["default"], unknown_grace=1.5)
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with pytest.raises(jobq.JobFailed) as failed:
            await handle.result(timeout=30)
        worker.stop()
    assert time.monotonic() - started >= 1.5
    assert failed.value.error_type == "jobq.UnknownJob"
    assert "nor did a worker that has it take it within 1.5 s" in failed.value.error_message
    assert _record(spool_path, "failed", handle.id)["attempts"] == 1
    warnings = [r.getMessage() for r in caplog.records if "not registered" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per job, not once per put-back
    assert handle.id in warnings[0]


def test_unknown_grace_must_not_be_negative(spool_path: Path) -> None:
    with pytest.raises(jobq.ConfigurationError, match="unknown_grace"):
        jobq.Worker(spool_path, unknown_grace=-1)
    done = run_jobq("worker", "apps.ops", "--unknown-grace", "-1", "--spool", str(spool_path))
    assert done.returncode == 2
    assert "--unknown-grace" in done.stderr
