"""End to end: producers on asyncio and trio, real ``jobq worker`` processes on both backends.

The jobs live in ``tests/apps/e2e.py``; workers import it as ``apps.e2e``. Every assertion is
something a user could check: results, exceptions, ``jobq status`` output, files on disk.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from apps import e2e
from conftest import run_jobq

import jobq

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import WorkerProcess

pytestmark = pytest.mark.anyio

STATES = ("pending", "scheduled", "waiting", "running", "done", "failed", "cancelled")
JOB_KEYS = {
    "id", "name", "queue", "state", "attempts", "enqueued_at", "started_at", "finished_at",
    "result", "error", "progress",
}  # fmt: skip


def status_json(spool: Path, *job_id: str) -> Any:
    """``jobq status [JOB_ID] --json`` through the installed entry point."""
    done = run_jobq("status", *job_id, "--json", "--spool", str(spool))
    info = json.loads(done.stdout)
    # One job's status is printed whatever its state, but "job failed" exits 1.
    failed = bool(job_id) and info["state"] == "failed"
    assert done.returncode == (1 if failed else 0), done.stderr
    return info


def counts(**nonzero: int) -> dict[str, int]:
    """A queue's counts as ``jobq status --json`` prints them: every state, zero unless given."""
    return {state: nonzero.get(state, 0) for state in STATES}


def burst(
    worker_process: Callable[..., WorkerProcess], spool: Path, *args: str, backend: str = "asyncio"
) -> WorkerProcess:
    """Run a ``--burst`` worker over default and cpu to completion; it must exit 0."""
    worker = worker_process(
        "apps.e2e", "--spool", str(spool), "--queues", "default,cpu", "--backend", backend,
        "--burst", *args,
    )  # fmt: skip
    code = worker.wait(timeout=60)
    assert code == 0, worker.output()
    return worker


def record_files(spool: Path) -> list[Path]:
    """Every outcome record under done/, failed/ and cancelled/."""
    return sorted(
        p for state in ("done", "failed", "cancelled") for p in (spool / state).rglob("*.json")
    )


async def test_many_jobs_across_two_queues(
    spool_path: Path, anyio_backend: str, worker_process: Callable[..., WorkerProcess]
) -> None:
    adds = await e2e.add.enqueue_many([(i, i + 1) for i in range(120)])
    failing = await e2e.fail.enqueue("async boom")
    pending = list((spool_path / "queues" / "default" / "pending").iterdir())
    assert len(pending) == 121
    assert all(json.loads(p.read_bytes())["format"] == 1 for p in pending)
    worker = worker_process(
        "apps.e2e", "--spool", str(spool_path), "--queues", "default,cpu",
        "--backend", anyio_backend, "--concurrency", "8",
    )  # fmt: skip
    # The rest arrives while the worker runs (it must notice new files by itself).
    squares = [await e2e.square.enqueue(i) for i in range(60)]
    squares += await e2e.square.enqueue_many([(i,) for i in range(60, 120)])
    failing_sync = await e2e.fail_sync.enqueue("sync boom")
    ran_on = await e2e.backend.enqueue()

    assert [await h.result(timeout=30) for h in adds] == [2 * i + 1 for i in range(120)]
    assert [await h.result(timeout=30) for h in squares] == [i * i for i in range(120)]
    assert await ran_on.result(timeout=30) == anyio_backend
    with pytest.raises(jobq.JobFailed) as failed:
        await failing.result(timeout=30)
    assert failed.value.job_id == failing.id
    assert failed.value.error_type == "apps.e2e.Boom"
    assert failed.value.error_message == "async boom"
    assert "apps.e2e.Boom: async boom" in failed.value.traceback
    with pytest.raises(jobq.JobFailed) as failed_sync:
        await failing_sync.result(timeout=30)
    assert (failed_sync.value.error_type, failed_sync.value.error_message) == (
        "ValueError",
        "sync boom",
    )
    assert await failing.state() == "failed"

    stats = status_json(spool_path)
    assert set(stats) == {"spool", "queues", "workers", "invalid"}
    assert stats["spool"] == str(spool_path)
    assert stats["queues"] == {
        "cpu": counts(done=120, failed=1),
        "default": counts(done=121, failed=1),
    }
    assert [set(w) for w in stats["workers"]] == [{"id", "host", "pid", "last_seen"}]
    assert stats["workers"][0]["pid"] == worker.pid
    assert (await jobq.Spool(spool_path).stats())["queues"] == stats["queues"]

    assert worker.stop() == 0, worker.output()
    assert status_json(spool_path)["workers"] == []
    assert_records_are_valid_json(spool_path, expected=243)
    assert os.listdir(spool_path / "tmp") == []


def assert_records_are_valid_json(spool: Path, expected: int) -> None:
    """Each outcome record is a JSON object naming the state and queue it is filed under."""
    files = record_files(spool)
    assert len(files) == expected
    for path in files:
        data = json.loads(path.read_bytes())
        state, queue = path.parent.parent.name, path.parent.name
        assert data["format"] == 1
        assert (data["id"], data["queue"], data["state"]) == (path.stem, queue, state)
        assert data["attempts"] == 1
        assert data["started_at"] <= data["finished_at"]


async def test_status_of_one_job_has_the_documented_keys(
    spool_path: Path, anyio_backend: str, worker_process: Callable[..., WorkerProcess]
) -> None:
    ok = await e2e.add.enqueue(20, 22)
    bad = await e2e.fail.enqueue("no luck")

    pending = status_json(spool_path, ok.id)
    assert set(pending) == JOB_KEYS
    assert pending["state"] == "pending"
    assert pending["attempts"] == 0
    assert (pending["started_at"], pending["finished_at"], pending["result"]) == (None,) * 3
    assert (pending["name"], pending["queue"]) == ("e2e.add", "default")

    burst(worker_process, spool_path, backend=anyio_backend)
    done = status_json(spool_path, ok.id)
    assert set(done) == JOB_KEYS
    assert (done["id"], done["state"], done["attempts"], done["result"]) == (ok.id, "done", 1, 42)
    assert done["error"] is None
    assert done["enqueued_at"] <= done["started_at"] <= done["finished_at"]
    assert await ok.info() == done

    failed = status_json(spool_path, bad.id)
    assert set(failed) == JOB_KEYS
    assert failed["state"] == "failed"
    assert set(failed["error"]) == {"type", "message", "traceback"}
    assert (failed["error"]["type"], failed["error"]["message"]) == ("apps.e2e.Boom", "no luck")
    assert "Traceback (most recent call last)" in failed["error"]["traceback"]


def test_enqueue_sync_from_plain_sync_code(
    spool_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    squares = [e2e.square.enqueue_sync(n) for n in range(5)]
    total = e2e.add.enqueue_sync(2, y=3)
    assert json.loads(next((spool_path / "queues" / "cpu" / "pending").iterdir()).read_bytes())
    burst(worker_process, spool_path)
    assert [h.result_sync(timeout=10) for h in squares] == [0, 1, 4, 9, 16]
    assert total.result_sync(timeout=10) == 5


async def test_enqueue_sync_inside_an_event_loop_is_refused(spool_path: Path) -> None:
    with pytest.raises(jobq.ConfigurationError, match="await"):
        e2e.add.enqueue_sync(1, 2)
    assert not (spool_path / "queues" / "default" / "pending").exists()


async def test_priority_order_across_two_queues(
    spool_path: Path,
    tmp_path: Path,
    anyio_backend: str,
    worker_process: Callable[..., WorkerProcess],
) -> None:
    order = tmp_path / "order.txt"
    plan = [
        ("default", 0, "d0"), ("cpu", 5, "c5a"), ("default", 9, "d9"), ("cpu", 0, "c0"),
        ("default", 5, "d5"), ("cpu", 9, "c9"), ("default", -3, "d-3"), ("cpu", 5, "c5b"),
    ]  # fmt: skip
    for queue, priority, tag in plan:
        await e2e.record.options(queue=queue, priority=priority).enqueue(str(order), tag)

    burst(worker_process, spool_path, "--concurrency", "1", backend=anyio_backend)

    # Higher priority first, whatever the queue; enqueue order among equals.
    expected = [tag for _, _, tag in sorted(plan, key=lambda p: -p[1])]
    assert order.read_text().split() == expected


async def test_enqueue_many_runs_in_batch_order(
    spool_path: Path,
    tmp_path: Path,
    anyio_backend: str,
    worker_process: Callable[..., WorkerProcess],
) -> None:
    # One batch shares one moment: its jobs must still run first in, first out.
    order = tmp_path / "order.txt"
    tags = [f"t{i:02d}" for i in range(30)]
    await e2e.record.enqueue_many([(str(order), tag) for tag in tags])
    await e2e.record.options(priority=1).enqueue_many([(str(order), "urgent")])

    burst(worker_process, spool_path, "--concurrency", "1", backend=anyio_backend)

    assert order.read_text().split() == ["urgent", *tags]


async def test_burst_worker_exits_zero_on_an_empty_spool(
    spool_path: Path, anyio_backend: str, worker_process: Callable[..., WorkerProcess]
) -> None:
    burst(worker_process, spool_path, backend=anyio_backend)
    assert status_json(spool_path)["workers"] == []


async def test_delayed_job_waits_in_scheduled_then_runs(
    spool_path: Path, anyio_backend: str, worker_process: Callable[..., WorkerProcess]
) -> None:
    handle = await e2e.stamp.options(delay=0.5).enqueue()
    scheduled = os.listdir(spool_path / "queues" / "default" / "scheduled")
    assert len(scheduled) == 1
    assert handle.id in scheduled[0]
    assert os.listdir(spool_path / "queues" / "default" / "pending") == []
    assert await handle.state() == "scheduled"
    assert status_json(spool_path)["queues"]["default"] == counts(scheduled=1)

    burst(worker_process, spool_path, backend=anyio_backend)  # burst waits for jobs due soon
    ran_at = await handle.result(timeout=10)
    info = status_json(spool_path, handle.id)
    assert ran_at >= info["enqueued_at"] + 0.5 - 0.01  # float µs rounding in the file name


async def test_dedupe_key_returns_the_same_job(
    spool_path: Path, anyio_backend: str, worker_process: Callable[..., WorkerProcess]
) -> None:
    first = await e2e.add.options(key="order-17").enqueue(1, 1)
    second = await e2e.add.options(key="order-17").enqueue(5, 5)
    other = await e2e.add.options(key="order-18").enqueue(2, 2)
    assert second.id == first.id
    assert other.id != first.id
    assert len(os.listdir(spool_path / "queues" / "default" / "pending")) == 2

    burst(worker_process, spool_path, backend=anyio_backend)
    assert await second.result(timeout=10) == 2
    again = await e2e.add.options(key="order-17").enqueue(9, 9)
    assert again.id == first.id
    assert await again.state() == "done"
    assert os.listdir(spool_path / "queues" / "default" / "pending") == []


async def test_job_logs_are_captured(
    spool_path: Path, anyio_backend: str, worker_process: Callable[..., WorkerProcess]
) -> None:
    async_job = await e2e.chatty.enqueue("apple")
    sync_job = await e2e.chatty_sync.enqueue("pear")
    burst(worker_process, spool_path, backend=anyio_backend)
    assert await async_job.result(timeout=10) == "apple"
    assert await sync_job.result(timeout=10) == "pear"

    for handle, word, other in ((async_job, "apple", "pear"), (sync_job, "pear", "apple")):
        cli = run_jobq("logs", handle.id, "--spool", str(spool_path))
        assert cli.returncode == 0, cli.stderr
        assert f"job logger says {word}" in cli.stdout
        assert f"stdlib logging says {word}" in cli.stdout
        assert other not in cli.stdout  # concurrent jobs never mix their lines
        assert await handle.log() == cli.stdout


async def test_worker_in_process(spool_path: Path, anyio_backend: str) -> None:
    adds = await e2e.add.enqueue_many([(i, i) for i in range(20)])
    square = await e2e.square.enqueue(7)
    chatty = await e2e.chatty.enqueue("in-process")
    failing = await e2e.fail.enqueue("in-process boom")
    ran_on = await e2e.backend.enqueue()

    cancelled = await e2e.add.enqueue(0, 0)
    assert await cancelled.cancel()
    with pytest.raises(TimeoutError):
        await adds[0].result(timeout=0.05)  # no worker yet

    worker = jobq.Worker(jobq.Spool(spool_path), queues=["default", "cpu"], concurrency=4)
    with anyio.fail_after(30):
        await worker.run(burst=True)

    assert [await h.result(timeout=1) for h in adds] == [2 * i for i in range(20)]
    assert await square.result(timeout=1) == 49
    assert await ran_on.result(timeout=1) == anyio_backend
    assert "stdlib logging says in-process" in await chatty.log()
    with pytest.raises(jobq.JobFailed, match="in-process boom"):
        await failing.result(timeout=1)
    with pytest.raises(jobq.JobCancelled):
        await cancelled.result(timeout=1)
    assert not await cancelled.cancel()  # already finished
    assert (await jobq.Spool(spool_path).stats())["workers"] == []
