"""An ``async def`` that blocks its event loop cannot be cancelled: its timeout fails it loudly.

``time.sleep`` inside an ``async def`` gives the cancel scope no ``await`` to stop at. Whether
the job then returns (``ops.block``) or reaches an ``await`` late (``ops.block_then_await``),
the attempt fails with ``TimeoutError`` and the worker logs a warning naming the job.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import pytest
from apps import ops

import jobq

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("job", [ops.block, ops.block_then_await])
async def test_a_job_that_blocks_the_loop_past_its_timeout_fails_loudly(
    spool_path: Path, caplog: pytest.LogCaptureFixture, job: jobq.JobFunction[[float], object, str]
) -> None:
    handle = await job.enqueue(1.0)  # blocks 1 s; its timeout is 0.2 s
    with caplog.at_level(logging.WARNING, logger="jobq.worker"):
        await jobq.Worker(spool_path, queues=["default"]).run(burst=True)
    with pytest.raises(jobq.JobFailed) as failed:
        await handle.result(timeout=5)
    assert failed.value.error_type == "TimeoutError"
    assert failed.value.error_message == (
        f"job {job.name} timed out after 0.2 s "
        "(it blocked the event loop, so it could not be stopped in time)"
    )
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "jobq.worker" and r.levelno == logging.WARNING and "blocked" in r.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert f"job {job.name} ({handle.id}) overran its timeout of 0.2 s" in warnings[0]
    assert "the event loop was blocked" in warnings[0]


async def test_a_job_that_awaits_within_its_timeout_is_not_blamed(
    spool_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    handle = await ops.block.enqueue(0.01)  # blocks, but well within its 0.2 s
    with caplog.at_level(logging.WARNING, logger="jobq.worker"):
        await jobq.Worker(spool_path, queues=["default"]).run(burst=True)
    assert await handle.result(timeout=5) == "finished anyway"
    assert not [r for r in caplog.records if "blocked" in r.getMessage()]


def test_a_worker_object_runs_again_on_another_event_loop(spool_path: Path) -> None:
    # Its state from one run (an event a waiter made) must not tie it to that run's loop.
    worker = jobq.Worker(spool_path, queues=["default"])
    for backend in ("asyncio", "asyncio", "trio"):
        handle = ops.nap.enqueue_sync(0.05)
        anyio.run(lambda: worker.run(burst=True), backend=backend)
        assert handle.result_sync(timeout=5) == 0.05
