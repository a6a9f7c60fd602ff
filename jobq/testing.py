"""Test helpers for apps that use jobq: a pytest plugin with a temporary spool and a burst run.

Load it explicitly, in the ``conftest.py`` at the root of your tests (it is not registered as an
auto-loading plugin, so it never changes the tests of a project that did not ask for it)::

    pytest_plugins = ["jobq.testing"]

Then::

    from jobq.testing import run_jobs

    async def test_signup_sends_mail(jobq_spool: jobq.Spool) -> None:
        await signup("ada@example.org")    # enqueues tasks.send_welcome
        await run_jobs()                   # runs every runnable job; raises if one failed

``jobq_spool`` is a fixture: a fresh spool under the test's ``tmp_path``, made the default spool
(``jobq.configure`` and ``$JOBQ_SPOOL``) for the duration of the test and reset after it.
``run_jobs()`` runs an in-process burst worker (``jobq.Worker(...).run(burst=True)``) and raises
``FailedJobs`` naming each job that failed during the run, with its error and traceback, like
arq's burst check and Dramatiq's ``join(fail_fast=True)``. It works on asyncio and trio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import pytest

from jobq import config, inspect, joblist
from jobq import layout as L
from jobq.decorator import Spool
from jobq.worker import Worker

if TYPE_CHECKING:
    import os
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from jobq.spool import SpoolDir

__all__ = ("FailedJob", "FailedJobs", "JobsRun", "jobq_spool", "run_jobs")


@dataclass(frozen=True, slots=True)
class FailedJob:
    """A job that ended in ``failed`` during a ``run_jobs()`` call.

    Attributes:
        id: the job's id.
        name: its registered name.
        queue: its queue.
        attempts: how many times it was started.
        error_type: the qualified name of the exception it raised (``TimeoutError``,
            ``myapp.tasks.PaymentDeclined``, ``jobq.UnknownJob``).
        error_message: ``str()`` of that exception.
        traceback: the traceback captured in the worker.
    """

    id: str
    name: str
    queue: str
    attempts: int
    error_type: str
    error_message: str
    traceback: str

    def __str__(self) -> str:
        return (
            f"job {self.name} ({self.id}, queue {self.queue}, {self.attempts} attempt(s)) "
            f"failed with {self.error_type}: {self.error_message}"
        )


@dataclass(frozen=True, slots=True)
class JobsRun:
    """What one ``run_jobs()`` call did.

    Attributes:
        processed: attempts the burst worker ran (retries included).
        failed: the jobs that ended in ``failed`` during the run.
    """

    processed: int
    failed: list[FailedJob]


class FailedJobs(AssertionError):
    """Raised by ``run_jobs()`` when jobs ended in ``failed`` during the run.

    An ``AssertionError``, so that pytest reports it as a failed test. Its message lists every
    failed job with its error; the last traceback of each follows.

    Attributes:
        failed: the failed jobs.
    """

    def __init__(self, failed: Sequence[FailedJob]) -> None:
        self.failed = list(failed)
        lines = [f"{len(self.failed)} job(s) failed:"]
        lines += [f"  {job}" for job in self.failed]
        for job in self.failed:
            lines += ["", f"traceback of job {job.name} ({job.id}):", job.traceback.rstrip()]
        super().__init__("\n".join(lines))


@pytest.fixture
def jobq_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Spool]:
    """A fresh spool under ``tmp_path``, the default spool of this test (reset after it).

    ``@jobq.job`` functions enqueue into it, ``jobq.Worker()`` and ``run_jobs()`` serve it, and a
    ``jobq worker`` subprocess finds it through ``$JOBQ_SPOOL``. It is not durable (no fsync):
    a test needs no protection from power loss, and runs faster without it.
    """
    path = tmp_path / "jobq-spool"
    saved = (config._configured_spool, config._configured_durable)
    monkeypatch.setenv("JOBQ_SPOOL", str(path))
    monkeypatch.setenv("JOBQ_DURABLE", "0")
    config.configure(spool=path, durable=False)
    try:
        yield Spool(path)
    finally:
        config._configured_spool, config._configured_durable = saved


async def run_jobs(
    spool: Spool | str | os.PathLike[str] | None = None,
    *,
    queues: Sequence[str] | None = None,
    concurrency: int = 10,
    raise_on_failure: bool = True,
) -> JobsRun:
    """Run every runnable job with an in-process burst worker; raise if any of them failed.

    The worker runs until nothing is runnable (see ``jobq.Worker.run``): retries and delayed
    jobs due within 60 s are waited for, so give jobs under test a small ``retry_delay``.

    Args:
        spool: the spool to serve; default: the configured spool (``jobq_spool`` sets it).
        queues: the queues to serve; default: the queues of every registered job plus
            ``default``.
        concurrency: jobs running at once.
        raise_on_failure: raise ``FailedJobs`` if a job ended in ``failed`` during the run.

    Returns:
        What the run did: attempts run and the jobs that failed.

    Raises:
        FailedJobs: if ``raise_on_failure`` and jobs failed during the run.
    """
    worker = Worker(spool, queues=queues, concurrency=concurrency)
    before = set(await anyio.to_thread.run_sync(_failed_keys, worker.spool))
    await worker.run(burst=True)
    after = await anyio.to_thread.run_sync(_failed_keys, worker.spool)
    failed = [
        await anyio.to_thread.run_sync(_failed_job, worker.spool, job_id)
        for job_id, finished_at in after
        if (job_id, finished_at) not in before
    ]
    if failed and raise_on_failure:
        raise FailedJobs(failed)
    return JobsRun(worker.processed, failed)


def _failed_keys(spool: SpoolDir) -> list[tuple[str, float | None]]:
    """Id and finish time of every failed job (a job retried and failed again is new)."""
    return [(r["id"], r["finished_at"]) for r in joblist.list_jobs(spool, state=L.FAILED)]


def _failed_job(spool: SpoolDir, job_id: str) -> FailedJob:
    info = inspect.job_info(spool, job_id)
    error = info.get("error") or {}
    return FailedJob(
        id=job_id,
        name=str(info.get("name")),
        queue=str(info.get("queue")),
        attempts=int(info.get("attempts") or 0),
        error_type=str(error.get("type", "")),
        error_message=str(error.get("message", "")),
        traceback=str(error.get("traceback", "")),
    )
