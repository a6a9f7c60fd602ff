"""Recording an outcome: the job file steps aside to its fence name, then the record lands.

A worker killed between the two steps has decided the outcome: the job looks running until
the worker is reaped, and the reaper completes the commit from the staged record (or, if a
power cut emptied that, runs the job again). One killed after the record landed leaves the
fence file behind: the outcome stands and the reaper drops the file, whatever became of the
record since. A worker frozen in its commit while a reaper settles it records one outcome.
A commit refused at the record's step puts the job file back and records the outcome once.
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from apps import die_in_commit
from conftest import DEAD_WORKER, claimed_by_dead_worker, run_jobq

import jobq
from jobq.layout import is_fence_name
from jobq.lease import reap_expired, reap_worker, requeue_held
from jobq.model import Outcome, decode_job, encode_record
from jobq.spool import Finish, SpoolDir, commits

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import WorkerProcess


def status(spool: Path, job_id: str, code: int = 0) -> dict[str, Any]:
    """What ``jobq status ID --json`` says of a job (it exits 1 for a failed one)."""
    done = run_jobq("status", job_id, "--json", "--spool", str(spool))
    assert done.returncode == code, done.stderr
    info: dict[str, Any] = json.loads(done.stdout)
    return info


def run_killed(
    spool: Path, worker_process: Callable[..., WorkerProcess], step: str
) -> WorkerProcess:
    """A burst worker of ``apps.die_in_commit`` that kills itself at ``step`` of its commit."""
    os.environ["JOBQ_TEST_DIE_AT"] = step
    try:
        worker = worker_process("apps.die_in_commit", "--spool", str(spool), "--lease", "1",
                                "--burst")  # fmt: skip
    finally:
        del os.environ["JOBQ_TEST_DIE_AT"]
    assert worker.wait() == -9, worker.output()
    return worker


def age_registrations(spool: Path) -> None:
    """Make every worker registration a minute old: their leases have run out."""
    long_ago = time.time() - 60
    for registration in (spool / "workers").glob("*.json"):
        os.utime(registration, (long_ago, long_ago))


def reap_with_a_second_worker(
    spool: Path, worker_process: Callable[..., WorkerProcess]
) -> WorkerProcess:
    """Age the registrations, then run a burst worker (it reaps first); it exits 0."""
    age_registrations(spool)
    second = worker_process("apps.die_in_commit", "--spool", str(spool), "--burst")
    assert second.wait() == 0, second.output()
    return second


def leftovers(spool: Path) -> list[str]:
    """Files left where a finished commit leaves none: ``tmp/``, ``running/``, ``invalid/``."""
    found = [*(spool / "tmp").iterdir(), *(spool / "invalid").iterdir()]
    found += [p for d in (spool / "running").iterdir() for p in d.iterdir()]
    return sorted(str(p.relative_to(spool)) for p in found)


def runs(job_out: Path) -> list[int]:
    """The pids of the workers that ran ``commit.touch``, in order."""
    return [int(line) for line in (job_out / "runs").read_text().split()]


def test_a_worker_killed_between_fence_and_record_has_its_outcome_completed_by_the_reaper(
    spool_path: Path, worker_process: Callable[..., WorkerProcess], job_out: Path
) -> None:
    handle = die_in_commit.touch.enqueue_sync()
    first = run_killed(spool_path, worker_process, "fence")

    (running_dir,) = (spool_path / "running").iterdir()
    (fenced,) = running_dir.iterdir()
    assert fenced.name.endswith("-01.json")  # the fence name: a zero before the start count
    assert [p.suffix for p in (spool_path / "tmp").iterdir()] == [".rec"]
    assert status(spool_path, handle.id)["state"] == "running"

    reap_with_a_second_worker(spool_path, worker_process)
    assert runs(job_out) == [first.pid]  # not run again: its outcome was decided
    info = status(spool_path, handle.id)
    assert (info["state"], info["result"], info["attempts"]) == ("done", first.pid, 1)
    assert leftovers(spool_path) == []


def test_a_staged_record_emptied_by_a_power_cut_runs_the_job_again(
    spool_path: Path, worker_process: Callable[..., WorkerProcess], job_out: Path
) -> None:
    handle = die_in_commit.touch.enqueue_sync()
    first = run_killed(spool_path, worker_process, "fence")
    (staged,) = (spool_path / "tmp").iterdir()
    staged.write_bytes(b"")  # durability off: its data never reached the disk

    second = reap_with_a_second_worker(spool_path, worker_process)
    assert runs(job_out) == [first.pid, second.pid]
    info = status(spool_path, handle.id)
    assert (info["state"], info["result"], info["attempts"]) == ("done", second.pid, 2)
    assert leftovers(spool_path) == []


def test_a_worker_killed_after_the_record_landed_keeps_its_outcome(
    spool_path: Path, worker_process: Callable[..., WorkerProcess], job_out: Path
) -> None:
    handle = die_in_commit.touch.enqueue_sync()
    first = run_killed(spool_path, worker_process, "record")

    info = status(spool_path, handle.id)
    assert (info["state"], info["result"], info["attempts"]) == ("done", first.pid, 1)
    (running_dir,) = (spool_path / "running").iterdir()
    assert [p.name.endswith("-01.json") for p in running_dir.iterdir()] == [True]
    # The fence file left behind is the finished job, counted once: as done.
    counts = json.loads(run_jobq("status", "--json", "--spool", str(spool_path)).stdout)
    assert (counts["queues"]["default"]["running"], counts["queues"]["default"]["done"]) == (0, 1)
    listed = run_jobq("jobs", "--state", "running", "--json", "--spool", str(spool_path))
    assert json.loads(listed.stdout) == []

    reap_with_a_second_worker(spool_path, worker_process)
    assert runs(job_out) == [first.pid]  # not run again
    assert status(spool_path, handle.id)["result"] == first.pid
    assert leftovers(spool_path) == []


def test_a_fence_file_left_behind_does_not_bring_back_a_job_retried_meanwhile(
    spool_path: Path, worker_process: Callable[..., WorkerProcess], job_out: Path
) -> None:
    handle = die_in_commit.fail.enqueue_sync()
    first = run_killed(spool_path, worker_process, "record")
    assert status(spool_path, handle.id, code=1)["state"] == "failed"
    retried = run_jobq("retry", handle.id, "--spool", str(spool_path))
    assert retried.returncode == 0, retried.stderr

    second = reap_with_a_second_worker(spool_path, worker_process)
    assert runs(job_out) == [first.pid, second.pid]  # the retry, once
    assert status(spool_path, handle.id, code=1)["state"] == "failed"
    assert not list((spool_path / "queues" / "default" / "pending").iterdir())
    assert leftovers(spool_path) == []


@pytest.mark.parametrize(
    ("when", "filesystem"),
    [("before the record", "local"), ("after the record", "local"),
     ("before the record", "network")],
)  # fmt: skip
def test_a_worker_frozen_in_its_commit_while_reaped_records_one_outcome(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch, when: str, filesystem: str
) -> None:
    # The worker's lease runs out while it is between two steps of its commit; a reaper
    # settles its commit meanwhile; then the worker carries on. On a network filesystem the
    # job file moves to the record's place (no fence file) and the record replaces it.
    monkeypatch.setattr(commits, "_fence_beside", lambda root: filesystem == "local")
    die_in_commit.touch.enqueue_sync()
    spool, held = claimed_by_dead_worker(spool_path)
    job = decode_job(Path(held.path).read_bytes())
    outcome = Outcome("done", held.name.attempts, None, time.time(), result="frozen")
    finish = Finish(held.path, "default", held.job_id, "done", encode_record(job, outcome))
    real_rename, real_unlink = os.rename, os.unlink
    reaped: list[str] = []
    frozen = [True]

    def reap_once() -> None:
        if frozen.pop() if frozen else False:
            age_registrations(spool_path)
            reaped.extend(reap_expired(spool, "reaper.1.abcdef", 1.0))

    def rename(src: str, dst: str) -> None:
        if when == "before the record" and str(src).endswith(".rec"):
            reap_once()
        real_rename(src, dst)

    def unlink(path: str) -> None:
        if when == "after the record" and is_fence_name(os.path.basename(path)):
            reap_once()
        real_unlink(path)

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "unlink", unlink)
    assert spool.commit([finish]) == [True]
    monkeypatch.undo()

    assert reaped == [DEAD_WORKER]
    record = json.loads((spool_path / "done" / "default" / f"{held.job_id}.json").read_bytes())
    assert (record["state"], record["result"], record["attempts"]) == ("done", "frozen", 1)
    assert not list((spool_path / "queues" / "default" / "pending").iterdir())
    assert leftovers(spool_path) == []


@pytest.mark.anyio
@pytest.mark.parametrize("filesystem", ["local", "network"])
@pytest.mark.parametrize("code", [errno.EIO, errno.ENOSPC], ids=["EIO", "ENOSPC"])
async def test_a_record_refused_at_its_rename_is_recorded_once_when_the_spool_lets_it(
    spool_path: Path, job_out: Path, monkeypatch: pytest.MonkeyPatch, code: int, filesystem: str
) -> None:
    # EIO: the worker rides the outage out and commits again; ENOSPC: it commits the outcome
    # alone again. Locally the job file is back from its fence name first; on a network
    # filesystem it is already at the record's place, and the staged record completes it.
    monkeypatch.setattr(commits, "_fence_beside", lambda root: filesystem == "local")
    real_rename = os.rename
    refused: list[str] = []

    def rename(src: str, dst: str) -> None:
        if str(src).endswith(".rec") and not refused:
            refused.append(str(src))
            raise OSError(code, os.strerror(code))
        real_rename(src, dst)

    handle = await die_in_commit.touch.enqueue()
    monkeypatch.setattr(os, "rename", rename)
    with anyio.fail_after(20):
        await jobq.Worker(spool_path, lease=5.0).run(burst=True)
    monkeypatch.setattr(os, "rename", real_rename)

    assert len(refused) == 1
    assert await handle.result(timeout=5) == os.getpid()
    assert runs(job_out) == [os.getpid()]
    assert (await handle.info())["attempts"] == 1
    assert leftovers(spool_path) == []


@pytest.mark.parametrize("reaper_steps", ["around the fence", "before the fence"])
def test_a_worker_frozen_before_its_fence_while_reaped_loses_nothing(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch, reaper_steps: str
) -> None:
    # The worker (this process: its staged records carry this pid) has staged its record and
    # freezes before the fence. A reaper either runs whole meanwhile (the job goes back and
    # the outcome is discarded) or is itself interleaved: it completes commits of the pid,
    # the worker fences, then the reaper lists the running directory and finds the fence.
    die_in_commit.touch.enqueue_sync()
    spool = SpoolDir(spool_path)
    worker_id = f"host.{os.getpid()}.abcdef"
    spool.register_worker(worker_id, {"id": worker_id, "pid": os.getpid(), "lease": 1.0})
    (name,) = spool.pending_names("default")
    held = spool.claim(worker_id, "default", name)
    assert held is not None
    job = decode_job(Path(held.path).read_bytes())
    outcome = Outcome("done", held.name.attempts, None, time.time(), result="frozen")
    finish = Finish(held.path, "default", held.job_id, "done", encode_record(job, outcome))
    real_rename = os.rename
    steps: list[str] = []

    def rename(src: str, dst: str) -> None:
        if str(src) == held.path and not steps:
            steps.append("fence")
            if reaper_steps == "before the fence":
                reap_worker(spool, worker_id, who="reaper", pid=os.getpid())
            else:
                spool.complete_commits(os.getpid())
        elif (
            str(src).endswith(".rec") and steps == ["fence"] and reaper_steps == "around the fence"
        ):
            steps.append("record")
            for each in spool.running_jobs(worker_id):
                requeue_held(spool, each, who="reaper")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    recorded = spool.commit([finish])
    monkeypatch.undo()

    pending = list((spool_path / "queues" / "default" / "pending").iterdir())
    if reaper_steps == "before the fence":
        assert recorded == [False]  # fenced: the job went back and runs again
        assert len(pending) == 1
    else:
        assert recorded == [True]  # the reaper completed the decided outcome
        record = json.loads((spool_path / "done" / "default" / f"{held.job_id}.json").read_bytes())
        assert record["result"] == "frozen"
        assert pending == []
    assert list((spool_path / "tmp").iterdir()) == []
    assert [p for d in (spool_path / "running").iterdir() for p in d.iterdir()] == []


def test_two_movers_of_one_job_file_to_its_fence_do_not_both_win(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A worker and a reaper (giving up on a job that killed its workers) fence the same
    # file: one rename wins. On a local filesystem the loser's ENOENT is the truth, though
    # it finds that very file at the fence name.
    die_in_commit.touch.enqueue_sync()
    spool, held = claimed_by_dead_worker(spool_path)
    fence = commits.fence_path(held.path)
    real_rename = os.rename

    def rival_first(src: str, dst: str) -> None:
        if str(src) == held.path and not os.path.exists(fence):
            real_rename(src, dst)  # the other mover's rename lands first
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rival_first)
    assert spool.move(held.path, fence) is False
    monkeypatch.undo()
    assert os.path.exists(fence)
