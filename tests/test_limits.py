"""Limits: ``max_running`` and ``rate_limit`` hold across worker processes; others flow past.

The jobs (``tests/apps/workflows.py``) record their start and end times; the assertions are
about those times, measured across real ``jobq worker`` processes.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import time
from typing import TYPE_CHECKING, Any

import pytest
from apps import workflows

import jobq
from jobq import limits

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import WorkerProcess


def _runs(job_out: Path, kind: str) -> list[dict[str, Any]]:
    path = job_out / f"{kind}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _wait_done(spool: Path, ids: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    done = spool / "done" / "default"
    while time.monotonic() < deadline:
        if all((done / f"{i}.json").exists() for i in ids):
            return
        time.sleep(0.1)
    missing = [i for i in ids if not (done / f"{i}.json").exists()]
    raise AssertionError(f"{len(missing)} jobs not done: {missing[:5]}")


def _workers(
    worker_process: Callable[..., WorkerProcess], spool: Path, count: int, *extra: str
) -> list[WorkerProcess]:
    """``count`` workers (concurrency 10 unless ``extra`` says otherwise)."""
    return [
        worker_process("apps.workflows", "--spool", str(spool), "--concurrency", "10", *extra)
        for _ in range(count)
    ]


@pytest.mark.parametrize("concurrency", [10, 2])
def test_max_running_holds_across_two_worker_processes(
    spool_path: Path, job_out: Path, worker_process: Callable[..., WorkerProcess], concurrency: int
) -> None:
    limited = [workflows.limited.enqueue_sync(n) for n in range(20)]
    free = [workflows.free.enqueue_sync(n) for n in range(20)]
    workers = _workers(worker_process, spool_path, 2, "--concurrency", str(concurrency))
    _wait_done(spool_path, [h.id for h in [*limited, *free]])
    for w in workers:
        assert w.stop() == 0, w.output()
    runs = _runs(job_out, "limited")
    assert sorted(r["n"] for r in runs) == list(range(20))
    # At no moment were more than three running: count overlaps at every start.
    for r in runs:
        overlapping = [o for o in runs if o["start"] <= r["start"] < o["end"]]
        assert len(overlapping) <= 3, overlapping
    if concurrency == 2:
        # Neither worker alone can hold three slots: the limit was shared by both.
        assert len({r["pid"] for r in runs}) == 2
    # Held-back jobs stayed pending without a start counted, and the free ones did not
    # wait for them: all 20 free jobs ran before the last limited job started.
    assert all(r["attempt"] == 1 for r in runs)
    last_limited = max(r["start"] for r in runs)
    assert max(r["start"] for r in _runs(job_out, "free")) < last_limited


def test_rate_limit_allows_at_most_five_starts_in_any_second(
    spool_path: Path, job_out: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    rated = [workflows.rated.enqueue_sync(n) for n in range(17)]
    free = [workflows.free.enqueue_sync(n) for n in range(10)]
    workers = _workers(worker_process, spool_path, 2)
    _wait_done(spool_path, [h.id for h in [*rated, *free]])
    for w in workers:
        assert w.stop() == 0, w.output()
    starts = sorted(r["start"] for r in _runs(job_out, "rated"))
    assert len(starts) == 17
    for s in starts:
        assert sum(1 for t in starts if s <= t < s + 1.0) <= 5, starts
    assert starts[-1] - starts[0] >= 3.0  # 17 starts at 5/s need more than three windows
    assert max(r["start"] for r in _runs(job_out, "free")) < starts[-1]


def test_slots_of_a_killed_worker_come_back_with_its_lease(
    spool_path: Path, job_out: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    # Slow jobs: the first worker is killed while it holds all three slots.
    limited = [workflows.limited.enqueue_sync(n) for n in range(6)]
    first = worker_process("apps.workflows", "--spool", str(spool_path), "--lease", "1")
    slots = spool_path / "limits" / "wf.limited" / "running"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (slots.exists() and len(os.listdir(slots)) == 3):
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    assert len(os.listdir(slots)) >= 1  # the dead worker's slots are still taken
    second = worker_process("apps.workflows", "--spool", str(spool_path), "--lease", "1")
    _wait_done(spool_path, [h.id for h in limited], timeout=30)
    assert second.stop() == 0, second.output()
    assert not os.listdir(slots)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_running": 0}, "max_running"),
        ({"max_running": "2"}, "max_running"),
        ({"rate_limit": "5/d"}, "rate_limit"),
        ({"rate_limit": "0/s"}, "rate_limit"),
        ({"rate_limit": 5}, "rate_limit"),
        ({"result_ttl": -1}, "result_ttl"),
    ],
)
def test_bad_limits_are_refused_at_decoration(options: dict[str, object], message: str) -> None:
    decorate: Any = jobq.job  # the options are wrong on purpose: no overload matches
    with pytest.raises(jobq.ConfigurationError, match=message):
        decorate(name="bad.limit", **options)


@pytest.mark.anyio
async def test_a_limit_the_spool_refuses_holds_the_job_back_uncounted(
    spool_path: Path, job_out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_create = limits._create
    refused: list[str] = []

    def full_disk_once(path: str, data: bytes) -> int | None:
        if not refused:
            refused.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_create(path, data)

    monkeypatch.setattr(limits, "_create", full_disk_once)
    handle = await workflows.limited.enqueue(5)
    await jobq.Worker(spool_path).run(burst=True)  # the worker survives and runs it later
    assert refused
    assert await handle.result(timeout=5) == 5
    assert [r["attempt"] for r in _runs(job_out, "limited")] == [1]
