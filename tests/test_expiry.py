"""Result expiry: ``result_ttl`` and ``jobq worker --result-ttl`` remove done records in time.

Records are found for their whole time to live, removed (with logs and keys) after it, and
failed records are kept as dead letters.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import anyio
import pytest
from apps import e2e, workflows
from conftest import run_jobq

import jobq
import jobq.admin
import jobq.handle
from jobq.expiry import expire_due

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import WorkerProcess

pytestmark = pytest.mark.anyio


async def test_a_done_record_is_kept_for_its_ttl_and_removed_after(spool_path: Path) -> None:
    handle = await workflows.brief.enqueue(7)
    await jobq.Worker(spool_path).run(burst=True)
    record = spool_path / "done" / "default" / f"{handle.id}.json"
    assert record.exists()
    assert await handle.result(timeout=1) == 7
    spool = jobq.Spool(spool_path).dir
    assert expire_due(spool) == 0  # not yet: result() must still find it
    assert record.exists()
    assert expire_due(spool, now=time.time() + 1.5) == 1
    assert not record.exists()
    with pytest.raises(jobq.JobNotFound):
        await handle.state()


@pytest.fixture
def quick_gone_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A waiting result() looks for its job anywhere every 0.2 s instead of every 5 s."""
    monkeypatch.setattr(jobq.handle, "GONE_LOOK_INTERVAL", 0.2)


async def test_result_of_a_job_whose_record_expired_raises_job_not_found(
    spool_path: Path, quick_gone_looks: None
) -> None:
    handle = await workflows.brief.enqueue(7)
    await jobq.Worker(spool_path).run(burst=True)
    assert expire_due(jobq.Spool(spool_path).dir, now=time.time() + 1.5) == 1
    with pytest.raises(jobq.JobNotFound, match="gone"):
        await handle.result(timeout=10)
    with pytest.raises(jobq.JobNotFound, match="gone"):
        await anyio.to_thread.run_sync(handle.result_sync, 10.0)


async def test_result_on_a_spool_that_does_not_answer_keeps_waiting(
    spool_path: Path, quick_gone_looks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A look that fails (a cut network mount) is no evidence that the job is gone."""
    handle = await workflows.brief.enqueue(7)
    await jobq.Worker(spool_path).run(burst=True)
    assert expire_due(jobq.Spool(spool_path).dir, now=time.time() + 1.5) == 1

    def unreachable(*args: object) -> None:
        raise OSError(107, "Transport endpoint is not connected")

    monkeypatch.setattr(jobq.admin, "locate", unreachable)
    with pytest.raises(TimeoutError):
        await handle.result(timeout=1.0)


async def test_result_of_a_job_still_to_run_is_never_taken_for_gone(
    spool_path: Path, quick_gone_looks: None
) -> None:
    waiting = await workflows.brief.enqueue(1)  # no worker: pending all along
    with pytest.raises(TimeoutError):
        await waiting.result(timeout=1.0)
    with pytest.raises(TimeoutError):
        await anyio.to_thread.run_sync(waiting.result_sync, 1.0)
    assert await waiting.state() == "pending"


def test_a_worker_removes_expired_records_in_housekeeping(
    spool_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    brief = [workflows.brief.enqueue_sync(n) for n in range(5)]
    keyed = e2e.add.options(key="nightly-report").enqueue_sync(1, 2)
    failing = e2e.fail.enqueue_sync("kept")
    kept = e2e.add.enqueue_sync(2, 3)
    worker = worker_process(
        "apps.e2e", "apps.workflows", "--spool", str(spool_path), "--result-ttl", "2s"
    )
    done = spool_path / "done" / "default"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(
        (done / f"{h.id}.json").exists() for h in [*brief, kept, keyed]
    ):
        time.sleep(0.05)
    assert all((done / f"{h.id}.json").exists() for h in [*brief, kept, keyed])
    # Gone about a second later (ttl 1 s), with their logs; the worker default (2 s) next.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any((done / f"{h.id}.json").exists() for h in brief):
        time.sleep(0.1)
    assert not any((done / f"{h.id}.json").exists() for h in brief)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (done / f"{kept.id}.json").exists():
        time.sleep(0.1)
    assert not (done / f"{kept.id}.json").exists()
    assert not (done / f"{keyed.id}.json").exists()
    # Failed records are dead letters: kept.
    assert (spool_path / "failed" / "default" / f"{failing.id}.json").exists()
    assert worker.stop() == 0, worker.output()
    # The key went with its record: the same key enqueues a new job.
    again = e2e.add.options(key="nightly-report").enqueue_sync(1, 2)
    assert again.id == keyed.id
    assert again.state_sync() == "pending"


def test_a_bad_result_ttl_is_a_usage_error(tmp_path: Path) -> None:
    done = run_jobq("worker", "apps.e2e", "--spool", str(tmp_path / "s"), "--result-ttl", "soon")
    assert done.returncode == 2
    assert "duration" in done.stderr
