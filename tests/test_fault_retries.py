"""Retries, dead letters, timeouts and cancellation, on asyncio and trio.

Workers run in-process (``Worker().run(burst=True)``); what the tests check is what a user
sees: results and exceptions from handles, ``jobq status ID --json``, ``jobq retry`` and
``jobq cancel`` through the CLI, and the jobs' own side effects (tests/fault_app.py).
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

import anyio
import fault_app
import pytest
from click.testing import CliRunner

import jobq
from jobq.cli import main as cli

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


def jobq_cli(*args: str) -> tuple[int, str]:
    """Run a ``jobq`` command in-process; its exit code and output (stderr included)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def job_status(spool: Path, job_id: str) -> Any:
    """``jobq status JOB_ID --json``."""
    code, output = jobq_cli("status", job_id, "--json", "--spool", str(spool))
    info = json.loads(output)
    assert code == (1 if info["state"] == "failed" else 0), output  # "job failed" exits 1
    return info


async def run_burst() -> None:
    """Run a worker until nothing is runnable."""
    await jobq.Worker(lease=5).run(burst=True)


async def wait_state(handle: jobq.JobHandle[Any], state: str, timeout: float = 10) -> None:
    """Poll until ``handle`` reaches ``state``."""
    with anyio.fail_after(timeout):
        while await handle.state() != state:
            await anyio.sleep(0.01)


def starts(out: Path) -> list[int]:
    """The attempt numbers the jobs started with, in order."""
    return [n[1] for n in fault_app.read_notes(out) if n[3] == "start"]


# -- retries -------------------------------------------------------------------------------


async def test_retries_then_success_counts_every_start(spool_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "effects"
    handle = await fault_app.fail_until.enqueue(str(out), 3)  # retries=2: attempts 1, 2, 3
    await run_burst()
    assert await handle.result(timeout=5) == 3
    info = job_status(spool_path, handle.id)
    assert (info["state"], info["attempts"], info["error"]) == ("done", 3, None)
    assert starts(out) == [1, 2, 3]
    log = await handle.log()
    assert "attempt 1 failed, retrying" in log
    assert "flaky failure on attempt 2" in log


async def test_exhausted_retries_land_in_failed_and_jobq_retry_requeues(
    spool_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "effects"
    handle = await fault_app.fail_until.enqueue(str(out), 4)
    await run_burst()
    with pytest.raises(jobq.JobFailed) as caught:
        await handle.result(timeout=5)
    assert caught.value.error_type == "RuntimeError"
    assert caught.value.error_message == "flaky failure on attempt 3"  # the last attempt's
    info = job_status(spool_path, handle.id)
    assert (info["state"], info["attempts"]) == ("failed", 3)
    assert "RuntimeError: flaky failure on attempt 3" in info["error"]["traceback"]
    assert (spool_path / "failed" / "default" / f"{handle.id}.json").is_file()

    code, output = jobq_cli("retry", handle.id, "--spool", str(spool_path))
    assert (code, output.strip()) == (0, f"{handle.id} requeued")
    assert await handle.state() == "pending"
    await run_burst()
    assert await handle.result(timeout=5) == 4
    assert job_status(spool_path, handle.id)["attempts"] == 4
    assert starts(out) == [1, 2, 3, 4]
    # Nothing left to retry for a done job, and unknown ids say so.
    code, output = jobq_cli("retry", handle.id, "--spool", str(spool_path))
    assert (code, "not dead" in output) == (0, True)
    code, output = jobq_cli("retry", "nosuchjob", "--spool", str(spool_path))
    assert code == 1
    assert "no job nosuchjob" in output


async def test_jobq_retry_failed_by_queue(spool_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "effects"
    mail = [await fault_app.always_fail.enqueue(str(out)) for _ in range(2)]  # queue "faults"
    other = await fault_app.fail_until.enqueue(str(out), 99)  # queue "default"
    await run_burst()
    handles: list[jobq.JobHandle[Any]] = [*mail, other]
    assert [await h.state() for h in handles] == ["failed"] * 3

    code, output = jobq_cli("retry", "--failed", "--queue", "faults", "--spool", str(spool_path))
    assert (code, output.strip()) == (0, "requeued 2 failed job(s)")
    assert [await h.state() for h in mail] == ["pending", "pending"]
    assert await other.state() == "failed"
    await run_burst()  # they run again, with a fresh budget of retries (retries=1)
    for handle in mail:
        with pytest.raises(jobq.JobFailed, match="boom on attempt 4"):
            await handle.result(timeout=5)
        assert job_status(spool_path, handle.id)["attempts"] == 4

    code, output = jobq_cli("retry", "--failed", "--spool", str(spool_path))
    assert (code, output.strip()) == (0, "requeued 3 failed job(s)")
    code, output = jobq_cli("retry", "--spool", str(spool_path))
    assert code == 2  # neither ids nor --failed


async def test_job_raises_retry_with_a_delay(spool_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "effects"
    handle = await fault_app.retry_later.enqueue(str(out), 0.4)
    enqueued = time.time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_burst)
        await wait_state(handle, "scheduled")  # waits for its due time in scheduled/
        assert list((spool_path / "queues" / "default" / "scheduled").iterdir())
    assert await handle.result(timeout=5) == 2
    info = job_status(spool_path, handle.id)
    assert info["attempts"] == 2
    assert info["started_at"] - enqueued >= 0.4
    assert starts(out) == [1, 2]


# -- timeouts ------------------------------------------------------------------------------


async def test_timeout_fails_an_async_job_naming_the_limit(
    spool_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "effects"
    handle = await fault_app.slow.enqueue(str(out), 30.0)
    started = time.monotonic()
    await run_burst()
    assert time.monotonic() - started < 5
    with pytest.raises(jobq.JobFailed) as caught:
        await handle.result(timeout=1)
    assert caught.value.error_type == "TimeoutError"
    assert "timed out after 0.2 s" in caught.value.error_message
    assert [n[3] for n in fault_app.read_notes(out)] == ["start"]  # it was stopped


async def test_timeout_of_a_sync_job_fails_it_and_abandons_its_thread(
    spool_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "effects"
    handle = await fault_app.slow_sync.enqueue(str(out), 2.0)
    started = time.monotonic()
    await run_burst()
    assert time.monotonic() - started < 1.5  # the worker did not wait for the thread
    with pytest.raises(jobq.JobFailed) as caught:
        await handle.result(timeout=1)
    assert "timed out after 0.2 s" in caught.value.error_message
    assert "thread was abandoned" in caught.value.error_message
    # The abandoned thread runs on to its end: Python cannot stop it (docs/guarantees.md).
    with anyio.fail_after(5):
        while [n[3] for n in fault_app.read_notes(out)] != ["start", "end"]:
            await anyio.sleep(0.02)
    assert await handle.state() == "failed"  # its late return changes nothing


# -- cancellation --------------------------------------------------------------------------


async def test_cancel_pending_and_scheduled_at_once(spool_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "effects"
    pending = await fault_app.mark.enqueue(str(out))
    scheduled = await fault_app.mark.options(delay=60).enqueue(str(out))
    assert await scheduled.state() == "scheduled"
    code, output = jobq_cli("cancel", pending.id, scheduled.id, "--spool", str(spool_path))
    assert code == 0
    assert output.splitlines() == [f"{pending.id} cancelled", f"{scheduled.id} cancelled"]
    for handle in (pending, scheduled):
        assert await handle.state() == "cancelled"
        with pytest.raises(jobq.JobCancelled):
            await handle.result(timeout=1)
    await run_burst()
    assert fault_app.read_notes(out) == []  # neither ran
    code, output = jobq_cli("cancel", pending.id, "--spool", str(spool_path))
    assert (code, output.strip()) == (0, f"{pending.id} already finished")
    code, output = jobq_cli("cancel", "nosuchjob", "--spool", str(spool_path))
    assert code == 1


@pytest.mark.parametrize("kind", ["nap", "nap_sync"])
async def test_cancel_running_job_at_next_check(
    spool_path: Path, tmp_path: Path, kind: str
) -> None:
    out = tmp_path / "effects"
    job = fault_app.nap if kind == "nap" else fault_app.nap_sync
    handle = await job.enqueue(str(out), 3.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_burst)
        await wait_state(handle, "running")
        started = time.monotonic()
        assert await handle.cancel() is True
        with pytest.raises(jobq.JobCancelled):
            await handle.result(timeout=5)
        assert time.monotonic() - started < 1.5
    assert job_status(spool_path, handle.id)["state"] == "cancelled"
    assert not list((spool_path / "cancel").iterdir())  # the request was served and cleared
    if kind == "nap":
        assert [n[3] for n in fault_app.read_notes(out)] == ["start"]


async def test_retry_of_a_cancelled_job_is_not_cancelled_again(
    spool_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "effects"
    handle = await fault_app.nap.enqueue(str(out), 0.6)
    assert await handle.cancel() is True
    assert await handle.state() == "cancelled"
    # A cancel request that came too late to be served (the job had already finished) must
    # not linger and cancel the job's next run after `jobq retry`.
    (spool_path / "cancel" / handle.id).touch()
    code, output = jobq_cli("retry", handle.id, "--spool", str(spool_path))
    assert (code, output.strip()) == (0, f"{handle.id} requeued")
    await run_burst()
    assert await handle.result(timeout=5) == os.getpid()
    assert [n[3] for n in fault_app.read_notes(out)] == ["start", "end"]
