"""Dependencies: ``options(after=[...])`` chains, fan-out and fan-in, failures, crashes.

Each test checks what a user sees: results in order, ``waiting`` in ``jobq status``,
``jobq.DependencyFailed`` from ``result()``, and nothing lost when a worker dies mid-release.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import TYPE_CHECKING

import anyio
import pytest
from apps import workflows
from conftest import run_jobq

import jobq

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import WorkerProcess

pytestmark = pytest.mark.anyio


def _labels(job_out: Path) -> list[str]:
    lines = (job_out / "steps.jsonl").read_text().splitlines()
    return [json.loads(line)["label"] for line in lines]


def _status(spool: Path) -> dict[str, int]:
    done = run_jobq("status", "--json", "--spool", str(spool))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)["queues"]["default"])


async def test_a_chain_of_three_runs_in_order(spool_path: Path, job_out: Path) -> None:
    a = await workflows.step.enqueue("a", 0.2)
    b = await workflows.step.options(after=[a]).enqueue("b")
    c = await workflows.step.options(after=[a.id, b]).enqueue("c")
    assert await b.state() == "waiting"
    assert await c.state() == "waiting"
    assert _status(spool_path)["waiting"] == 2
    await jobq.Worker(spool_path, concurrency=5).run(burst=True)
    assert [await h.result(timeout=5) for h in (a, b, c)] == ["a", "b", "c"]
    assert _labels(job_out) == ["a", "b", "c"]


async def test_fan_out_and_fan_in_of_twenty(spool_path: Path, job_out: Path) -> None:
    root = await workflows.step.enqueue("root")
    branches = [await workflows.step.options(after=[root]).enqueue(f"b{i}") for i in range(20)]
    join = await workflows.step.options(after=branches).enqueue("join")
    assert _status(spool_path)["waiting"] == 21
    await jobq.Worker(spool_path, concurrency=8).run(burst=True)
    assert await join.result(timeout=5) == "join"
    labels = _labels(job_out)
    assert labels[0] == "root"
    assert labels[-1] == "join"
    assert sorted(labels[1:-1]) == sorted(f"b{i}" for i in range(20))
    assert not os.listdir(spool_path / "deps")  # every edge cleaned up


async def test_a_failed_dependency_cancels_its_dependents_transitively(
    spool_path: Path, job_out: Path
) -> None:
    a = await workflows.broken.enqueue("a")
    b = await workflows.step.options(after=[a]).enqueue("b")
    c = await workflows.step.options(after=[b]).enqueue("c")
    other = await workflows.step.enqueue("unrelated")
    await jobq.Worker(spool_path).run(burst=True)
    with pytest.raises(jobq.JobFailed):
        await a.result(timeout=5)
    with pytest.raises(jobq.DependencyFailed, match=f"dependency {a.id} ended failed") as info:
        await b.result(timeout=5)
    assert info.value.dependency == a.id
    with pytest.raises(jobq.DependencyFailed, match=f"dependency {b.id} ended cancelled"):
        await c.result(timeout=5)
    assert isinstance(info.value, jobq.JobCancelled)
    assert await other.result(timeout=5) == "unrelated"
    assert "b" not in _labels(job_out)
    assert "c" not in _labels(job_out)
    shown = run_jobq("status", c.id, "--json", "--spool", str(spool_path))
    assert json.loads(shown.stdout)["error"]["type"] == "jobq.DependencyFailed"


async def test_cancelling_a_dependency_cancels_the_waiting_job(spool_path: Path) -> None:
    a = await workflows.step.options(delay=60).enqueue("a")
    b = await workflows.step.options(after=[a]).enqueue("b")
    assert await a.cancel()
    with pytest.raises(jobq.DependencyFailed):
        await b.result(timeout=5)


async def test_a_dependency_that_finished_already_releases_at_once(
    spool_path: Path, job_out: Path
) -> None:
    a = await workflows.step.enqueue("a")
    await jobq.Worker(spool_path).run(burst=True)
    b = await workflows.step.options(after=[a]).enqueue("b")
    assert await b.state() == "pending"
    failed = await workflows.broken.enqueue("x")
    await jobq.Worker(spool_path).run(burst=True)
    c = await workflows.step.options(after=[failed]).enqueue("c")
    with pytest.raises(jobq.DependencyFailed):
        await c.result(timeout=5)


async def test_unknown_dependencies_and_bad_combinations_are_refused(spool_path: Path) -> None:
    with pytest.raises(jobq.JobNotFound):
        await workflows.step.options(after=["nosuchjob"]).enqueue("x")
    with pytest.raises(jobq.ConfigurationError):
        workflows.step.options(after=["x"], delay=5)
    with pytest.raises(jobq.InvalidName):
        workflows.step.options(after=["../etc"])
    assert not (spool_path / "queues" / "default" / "waiting").exists()


async def test_retrying_a_dependency_does_not_resurrect_dependents_but_retrying_them_does(
    spool_path: Path, job_out: Path
) -> None:
    a = await workflows.broken.enqueue("a")
    b = await workflows.step.options(after=[a]).enqueue("b")
    await jobq.Worker(spool_path).run(burst=True)
    assert await b.state() == "cancelled"
    # Retrying the failed dependency runs it again, but b stays cancelled.
    assert run_jobq("retry", a.id, "--spool", str(spool_path)).returncode == 0
    await jobq.Worker(spool_path).run(burst=True)
    assert await b.state() == "cancelled"
    # Retrying b re-checks its dependency: still failed, so b is cancelled again, and the
    # command says so rather than report a plain requeue.
    retried = run_jobq("retry", b.id, "--spool", str(spool_path))
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout == (
        f"{b.id} requeued, but cancelled again at once: a job it runs after (after=) is failed "
        "or cancelled; retry that one first\n"
    )
    assert await b.state() == "cancelled"
    # Once the dependency is done, retrying b runs it.
    done_a = await workflows.step.enqueue("a2")
    c = await workflows.step.options(after=[done_a]).enqueue("c")
    await jobq.Worker(spool_path).run(burst=True)
    assert await c.result(timeout=5) == "c"


def test_a_worker_killed_while_releasing_loses_and_doubles_nothing(
    spool_path: Path, worker_process: Callable[..., WorkerProcess], job_out: Path
) -> None:
    # Ten roots with eight dependents each; a worker is killed again and again while roots
    # finish and release their dependents, then one worker finishes the rest.
    roots = [workflows.step.enqueue_sync(f"r{i}", 0.05) for i in range(10)]
    leaves = [
        workflows.step.options(after=[r]).enqueue_sync(f"l{i}.{j}")
        for i, r in enumerate(roots)
        for j in range(8)
    ]
    for _ in range(4):
        w = worker_process("apps.workflows", "--spool", str(spool_path), "--lease", "1",
                           "--concurrency", "4")  # fmt: skip
        time.sleep(0.5)
        os.kill(w.pid, signal.SIGKILL)
        w.wait()
    final = worker_process("apps.workflows", "--spool", str(spool_path), "--lease", "1")
    final.wait_registered(spool_path)
    every = [*roots, *leaves]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(_done(spool_path, h.id) for h in every):
        time.sleep(0.1)
    assert final.stop() == 0, final.output()
    assert all(_done(spool_path, h.id) for h in every)
    runs = [json.loads(line) for line in (job_out / "steps.jsonl").read_text().splitlines()]
    # None ran twice on a first attempt (a dependent released twice would).
    first = [r["id"] for r in runs if r["attempt"] == 1]
    assert len(first) == len(set(first))
    assert {f"l{i}.{j}" for i in range(10) for j in range(8)} <= set(_labels(job_out))
    assert not os.listdir(spool_path / "queues" / "default" / "waiting")


def _done(spool: Path, job_id: str) -> bool:
    return (spool / "done" / "default" / f"{job_id}.json").exists()


async def test_waiting_jobs_hold_no_worker_slot(spool_path: Path, job_out: Path) -> None:
    gate = await workflows.step.options(delay=1).enqueue("gate")
    waiting = [await workflows.step.options(after=[gate]).enqueue(f"w{i}") for i in range(5)]
    free = [await workflows.step.enqueue(f"f{i}") for i in range(3)]
    with anyio.fail_after(20):
        await jobq.Worker(spool_path, concurrency=1).run(burst=True)
    assert [await h.result(timeout=1) for h in free] == ["f0", "f1", "f2"]
    assert [await h.result(timeout=1) for h in waiting] == [f"w{i}" for i in range(5)]
    assert _labels(job_out)[:3] == ["f0", "f1", "f2"]
