"""Power cuts with durability off: what survives, and how jobq reads what does not.

``PowerCut`` simulates the cut: it records every file this process fsyncs, and ``cut()``
empties every file in the spool that was not (names and renames survive, as a journalling
filesystem keeps them; data that was never synced is lost, as XFS or ext4 lose it). Each
test then looks at the spool the way a user would: ``jobq`` commands and their exit codes,
``result()``, files on disk.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from apps import e2e
from conftest import DEAD_WORKER, claimed_by_dead_worker, die_mid_commit, run_jobq

import jobq
from jobq.lease import reap_expired
from jobq.spool import SpoolDir, files

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import WorkerProcess


class PowerCut:
    """Loses, at ``cut()``, the data of every spool file that was never fsynced."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.synced: set[tuple[int, int]] = set()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Watch fsync (and the syncfs that durable batches use) from now on."""
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            real_fsync(fd)
            st = os.fstat(fd)
            self.synced.add((st.st_dev, st.st_ino))

        def syncfs(fd: int) -> None:  # everything on the filesystem is synced
            for path in self.root.rglob("*"):
                st = path.stat()
                self.synced.add((st.st_dev, st.st_ino))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "fdatasync", fsync)  # what a journal line needs (its size too)
        monkeypatch.setattr(files, "_syncfs", syncfs)

    def cut(self) -> list[str]:
        """Empty every file whose data was never synced; their paths, relative to the root."""
        emptied = []
        for path in sorted(self.root.rglob("*")):
            st = path.lstat()
            if path.is_file() and st.st_size and (st.st_dev, st.st_ino) not in self.synced:
                os.truncate(path, 0)
                emptied.append(str(path.relative_to(self.root)))
        return emptied


@pytest.fixture
def power(spool_path: Path, monkeypatch: pytest.MonkeyPatch) -> PowerCut:
    """A power cut to come for ``spool_path``, watching fsyncs from now on."""
    cut = PowerCut(spool_path)
    cut.install(monkeypatch)
    return cut


def jobq_json(spool: Path, *args: str) -> tuple[int, Any]:
    """A ``jobq ... --json`` command through the entry point: its exit code and output."""
    done = run_jobq(*args, "--json", "--spool", str(spool))
    return done.returncode, json.loads(done.stdout) if done.stdout else done.stderr


def touch_back(path: Path, seconds: float) -> None:
    """Set ``path``'s mtime ``seconds`` into the past."""
    then = time.time() - seconds
    os.utime(path, (then, then))


# -- 4: the format marker ------------------------------------------------------------------


def test_a_spool_created_without_durability_keeps_its_marker_through_a_power_cut(
    spool_path: Path, power: PowerCut, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQ_DURABLE", "0")
    e2e.add.enqueue_sync(1, 2)  # creates the spool, durability off

    (job_file,) = os.listdir(spool_path / "queues" / "default" / "pending")
    assert power.cut() == [f"queues/default/pending/{job_file}"]  # the marker was synced
    assert json.loads((spool_path / "jobq-spool.json").read_bytes()) == {"format": 1}
    code, stats = jobq_json(spool_path, "status")
    assert code == 0
    assert stats["queues"]["default"]["pending"] == 1  # the emptied job: a worker quarantines it


def test_an_empty_marker_is_a_crash_leftover_of_creation_and_is_rewritten(
    spool_path: Path,
) -> None:
    handle = e2e.add.enqueue_sync(1, 2)
    (spool_path / "jobq-spool.json").write_bytes(b"")  # what a jobq before this fix left

    code, info = jobq_json(spool_path, "status", handle.id)
    assert (code, info["state"]) == (0, "pending")
    assert run_jobq("jobs", "--spool", str(spool_path)).returncode == 0
    added = run_jobq("enqueue", "e2e.add", "--args", "[3, 4]", "--spool", str(spool_path))
    assert added.returncode == 0, added.stderr
    assert json.loads((spool_path / "jobq-spool.json").read_bytes()) == {"format": 1}
    assert jobq_json(spool_path, "status")[1]["queues"]["default"]["pending"] == 2


@pytest.mark.parametrize(
    ("marker", "says"),
    [
        (b'{"form', "is not a jobq format marker (not valid JSON"),
        (b"\x00\x00\x00\x00", "is not a jobq format marker (not valid JSON"),
        (b"[1]", 'is not a jobq format marker (not an object with an integer "format")'),
        (
            b'{"format": "1"}',
            'is not a jobq format marker (not an object with an integer "format")',
        ),
        (b'{"format": 2}', "holds a spool of format 2; this jobq reads format 1"),
    ],
)
def test_a_marker_with_other_contents_is_refused_clearly(
    spool_path: Path, marker: bytes, says: str
) -> None:
    e2e.add.enqueue_sync(1, 2)
    (spool_path / "jobq-spool.json").write_bytes(marker)

    for command in (("status",), ("jobs",), ("enqueue", "e2e.add", "--args", "[1, 2]")):
        refused = run_jobq(*command, "--spool", str(spool_path))
        assert refused.returncode == 2, refused
        assert says in refused.stderr
        assert len(refused.stderr.splitlines()) == 1
        assert "format None" not in refused.stderr
    assert (spool_path / "jobq-spool.json").read_bytes() == marker  # never "repaired"


# -- 5: outcome records --------------------------------------------------------------------


async def _run_undurably(spool_path: Path) -> None:
    """Drain the spool with an in-process worker that does not fsync outcomes."""
    await jobq.Worker(spool_path, durable=False, lease=5.0).run(burst=True)


@pytest.mark.anyio
async def test_a_record_emptied_by_a_power_cut_is_quarantined_and_reported(
    spool_path: Path, power: PowerCut
) -> None:
    handle = await e2e.add.enqueue(2, 3)  # durable: the job survives
    await _run_undurably(spool_path)
    record = spool_path / "done" / "default" / f"{handle.id}.json"
    assert power.cut() == [f"done/default/{handle.id}.json"]
    assert record.read_bytes() == b""

    _, stats = jobq_json(spool_path, "status")
    assert (stats["queues"]["default"]["done"], stats["invalid"]) == (1, 0)  # not met yet

    code, info = jobq_json(spool_path, "status", handle.id)
    assert (code, info["id"], info["queue"], info["state"]) == (1, handle.id, "default", "invalid")
    assert info["error"]["type"] == "jobq.Quarantined"
    assert "unreadable outcome record" in info["error"]["message"]
    assert "an empty file" in info["error"]["message"]
    quarantined = spool_path / "invalid" / f"done@default@{handle.id}.json"
    assert not record.exists()
    assert quarantined.read_bytes() == b""  # byte for byte
    assert "power cut" in Path(f"{quarantined}.reason").read_text()

    code, stats = jobq_json(spool_path, "status")
    assert (code, stats["queues"]["default"]["done"], stats["invalid"]) == (0, 0, 1)
    code, rows = jobq_json(spool_path, "jobs", "--state", "invalid")
    assert [(r["id"], r["queue"]) for r in rows] == [(handle.id, "default")]
    assert "ended done" in rows[0]["reason"]

    with pytest.raises(jobq.JobFailed) as failed:
        await handle.result(timeout=5)
    assert failed.value.error_type == "jobq.Quarantined"
    assert await handle.state() == "invalid"
    text = run_jobq("status", handle.id, "--spool", str(spool_path))
    assert text.returncode == 1
    assert "invalid" in text.stdout
    assert "jobq.Quarantined" in text.stdout
    retried = run_jobq("retry", handle.id, "--spool", str(spool_path))
    assert retried.returncode == 0
    assert "invalid: its file was quarantined" in retried.stdout
    cancelled = run_jobq("cancel", handle.id, "--spool", str(spool_path))
    assert cancelled.returncode == 0
    assert "already finished" in cancelled.stdout


@pytest.mark.anyio
async def test_result_that_meets_a_damaged_record_first_raises_at_once(
    spool_path: Path,
) -> None:
    handle = await e2e.add.enqueue(2, 3)
    await _run_undurably(spool_path)
    record = spool_path / "done" / "default" / f"{handle.id}.json"
    record.write_bytes(b'{"format":1,"id":"' + handle.id.encode())  # cut short, not emptied

    with anyio.fail_after(5), pytest.raises(jobq.JobFailed) as failed:
        await handle.result()
    assert failed.value.error_type == "jobq.Quarantined"
    assert "not valid JSON" in failed.value.error_message
    code, info = jobq_json(spool_path, "status", handle.id)
    assert (code, info["state"], info["error"]) == (1, "invalid", {
        "type": "jobq.Quarantined", "message": failed.value.error_message, "traceback": "",
    })  # fmt: skip


@pytest.mark.anyio
async def test_a_waiting_result_ends_when_a_worker_quarantines_the_job_file(
    spool_path: Path, power: PowerCut, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBQ_DURABLE", "0")
    handle = await e2e.add.enqueue(2, 3)
    power.cut()  # the job file comes back empty

    async with anyio.create_task_group() as tg:
        tg.start_soon(_run_undurably, spool_path)
        with anyio.fail_after(5), pytest.raises(jobq.JobFailed) as failed:
            await handle.result()
    assert failed.value.error_type == "jobq.Quarantined"
    assert "corrupt job file" in failed.value.error_message
    assert await handle.state() == "invalid"


@pytest.mark.anyio
async def test_dependents_of_a_job_whose_record_was_lost_go_by_the_state_it_had(
    spool_path: Path, power: PowerCut
) -> None:
    first = await e2e.add.enqueue(1, 1)
    await _run_undurably(spool_path)
    power.cut()  # first's done record is empty now

    then = await e2e.add.options(after=[first]).enqueue(2, 2)  # meets it, quarantines it
    assert (spool_path / "invalid" / f"done@default@{first.id}.json").exists()
    await _run_undurably(spool_path)
    assert await then.result(timeout=5) == 4  # first did end done: its dependent runs


@pytest.mark.anyio
async def test_a_bare_record_whose_staged_record_was_emptied_runs_again(
    spool_path: Path, tmp_path: Path
) -> None:
    import fault_app

    handle = await fault_app.mark.enqueue(str(tmp_path / "effects"))
    # It staged its record, made the commit rename, and the power failed: the staged record,
    # never synced, is empty; the job itself is whole in done/, without its outcome.
    die_mid_commit(spool_path, lambda job: b"")

    await jobq.Worker(lease=1.0).run(burst=True)  # reaps the dead worker at start
    assert isinstance(await handle.result(timeout=5), int)  # it ran again and is recorded
    assert (await handle.info())["attempts"] == 2  # the lost start counts
    assert list((spool_path / "tmp").iterdir()) == []
    assert list((spool_path / "invalid").iterdir()) == []


def test_a_bare_cancelled_record_whose_staged_record_was_emptied_stays_cancelled(
    spool_path: Path,
) -> None:
    handle = e2e.add.enqueue_sync(1, 2)
    spool = SpoolDir(spool_path, durable=False)
    (pending,) = spool.pending_names("default")
    os.rename(
        spool_path / "queues" / "default" / "pending" / pending,
        spool_path / "cancelled" / "default" / f"{handle.id}.json",
    )
    staged = spool_path / "tmp" / f"cancelled@default@{handle.id}.4242.0f0f0f.rec"
    staged.write_bytes(b"")
    touch_back(staged, 7200)

    assert spool.collect_tmp(3600.0) == 1
    with pytest.raises(jobq.JobCancelled):
        handle.result_sync(timeout=5)
    assert not staged.exists()


# -- 6: worker registrations ---------------------------------------------------------------


def test_a_registration_survives_a_power_cut_without_durability(
    spool_path: Path, power: PowerCut
) -> None:
    spool = SpoolDir(spool_path, durable=False)
    info = {"id": "web1.4242.abcdef", "host": "web1", "pid": 4242, "lease": 7.0}
    spool.register_worker("web1.4242.abcdef", info)

    power.cut()
    assert json.loads(Path(spool.worker_file("web1.4242.abcdef")).read_bytes()) == info
    _, stats = jobq_json(spool_path, "status")
    assert [(w["id"], w["host"], w["pid"]) for w in stats["workers"]] == [
        ("web1.4242.abcdef", "web1", 4242)
    ]


def test_an_empty_registration_is_judged_by_its_mtime_against_the_reapers_lease(
    spool_path: Path,
) -> None:
    handle = e2e.add.enqueue_sync(1, 2)
    spool, _ = claimed_by_dead_worker(spool_path)
    dead = DEAD_WORKER
    registration = Path(spool.worker_file(dead))
    registration.write_bytes(b"")  # what a power cut left of it (before this fix)

    assert reap_expired(spool, "me.1.aaaaaa", lease=10.0) == []  # a heartbeat ago: alive
    _, stats = jobq_json(spool_path, "status")
    assert [(w["id"], w["host"]) for w in stats["workers"]] == [(dead, None)]
    touch_back(registration, 11.0)
    assert reap_expired(spool, "me.1.aaaaaa", lease=10.0) == [dead]
    assert not registration.exists()
    assert jobq_json(spool_path, "status", handle.id)[1]["state"] == "pending"


def test_a_burst_worker_reaps_a_worker_with_an_empty_registration_by_its_lease(
    spool_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    handle = e2e.add.enqueue_sync(2, 3)
    spool, _ = claimed_by_dead_worker(spool_path)  # its running dir is fresh
    dead = DEAD_WORKER
    registration = Path(spool.worker_file(dead))
    registration.write_bytes(b"")
    touch_back(registration, 5.0)  # silent for 5 s: more than the reaper's 1 s lease

    started = time.monotonic()
    worker = worker_process("apps.e2e", "--spool", str(spool_path), "--burst", "--lease", "1")
    assert worker.wait(timeout=30) == 0, worker.output()
    assert time.monotonic() - started < 20  # by the lease, not after a fixed 30 s
    assert f"reaped worker {dead}" in worker.output()
    code, info = jobq_json(spool_path, "status", handle.id)
    assert (code, info["state"], info["result"], info["attempts"]) == (0, "done", 5, 2)
    assert not registration.exists()


# -- 7: a starting worker's chores ---------------------------------------------------------


def test_a_burst_worker_with_nothing_to_do_still_collects_stale_tmp_files(
    spool_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    SpoolDir(spool_path).ensure_queue("default")
    tmp = spool_path / "tmp"
    half_job = tmp / "1a2b3c.4242.abcd.job"
    half_job.write_bytes(b'{"format": 1, "id": "1a2b3c", "na')  # its producer died
    fresh = tmp / "1a2b3d.4242.abce.job"
    fresh.write_bytes(b'{"format": 1')  # a producer writing right now: left alone
    # A commit cut between its two renames an hour and more ago: the job is in done/, its
    # record still staged.
    job = {"format": 1, "id": "cut1", "name": "e2e.add", "queue": "default", "args": [3, 4]}
    (spool_path / "done" / "default" / "cut1.json").write_bytes(json.dumps(job).encode())
    staged = tmp / "done@default@cut1.4242.abcf.rec"
    record = job | {"state": "done", "attempts": 1, "result": 7, "error": None}
    staged.write_bytes(json.dumps(record).encode())
    for path in (half_job, staged):
        touch_back(path, 7200)
    # Other workers are registered, so looking for dead ones (the chore before) takes a while:
    # a burst worker must not be gone by the time the collection's turn comes.
    for n in range(300):
        (spool_path / "workers" / f"web{n}.{n}.aaaaaa.json").write_bytes(b'{"lease": 3600}')

    worker = worker_process("apps.e2e", "--spool", str(spool_path), "--burst")
    assert worker.wait(timeout=30) == 0, worker.output()
    assert sorted(p.name for p in tmp.iterdir()) == [fresh.name]
    code, info = jobq_json(spool_path, "status", "cut1")
    assert (code, info["state"], info["result"]) == (0, "done", 7)
