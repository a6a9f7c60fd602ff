"""Producer journals: durable enqueues in one flush, and jobs mended after a power cut.

Where the filesystem keeps metadata in order, a durable enqueue writes its job file without a
sync and flushes its bytes as a line of its process's journal (``jobq.spool.journal``). These
tests choose that path whatever filesystem runs them, cut the power with ``PowerCut`` (every
file never synced comes back empty) and check what a user would: results from real workers,
``jobq status``, files on disk.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from apps import e2e
from conftest import (
    DEAD_WORKER,
    TESTS,
    claimed_by_dead_worker,
    die_mid_commit,
    run_jobq,
    wait_for,
)
from test_power_loss import PowerCut, jobq_json, touch_back

import jobq
from jobq.lease import reap_expired
from jobq.spool import SpoolDir, files, journal
from jobq.waiting import filesystem_type

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from conftest import WorkerProcess


@pytest.fixture
def journaled(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Durable enqueues of this process go through its journal, retired only when asked."""
    monkeypatch.setattr(journal, "FORCE", True)
    monkeypatch.setattr(journal, "RETIRE_AFTER", 60.0)
    yield
    journal.close_all()  # no retirement of this test's journals syncs a later test's files


def journal_lines(spool: Path) -> list[dict[str, object]]:
    """Every job line the spool's journals hold."""
    found = []
    for path in sorted((spool / "journals").glob("*.jsonl")):
        found += [json.loads(line) for line in path.read_bytes().splitlines()]
    return found


def job_files(spool: Path) -> list[Path]:
    """Every job file in a queue (pending, scheduled, waiting)."""
    return sorted((spool / "queues").glob("*/*/*.json"))


PRODUCER = """
import os, sys
import jobq
from apps import e2e
from jobq.spool import journal

journal.FORCE = True
jobq.configure(spool=sys.argv[1])
handles = [e2e.add.enqueue_sync(n, 100) for n in range(int(sys.argv[2]))]
print(" ".join(h.id for h in handles), flush=True)
if sys.argv[3] == "killed":
    os.kill(os.getpid(), 9)
"""


def produce(spool: Path, count: int, end: str) -> list[str]:
    """Enqueue ``count`` jobs ``e2e.add(n, 100)`` from a producer process that then exits
    (``end="exit"``) or is SIGKILLed (``end="killed"``); their ids."""
    done = subprocess.run(
        [sys.executable, "-c", PRODUCER, str(spool), str(count), end],
        cwd=TESTS,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    expected = -signal.SIGKILL if end == "killed" else 0
    assert done.returncode == expected, done.stderr
    return done.stdout.split()


# -- the power cut ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_durable_enqueues_survive_a_power_cut_through_the_journal(
    spool_path: Path, journaled: None, worker_process: Callable[..., WorkerProcess]
) -> None:
    power = PowerCut(spool_path)
    with pytest.MonkeyPatch.context() as patch:
        power.install(patch)
        singles = [await e2e.add.enqueue(n, 1) for n in range(4)]
        batch = await e2e.add.enqueue_many([(n, 2) for n in range(4)])
        later = await e2e.add.options(delay=1.0).enqueue(7, 7)
        handles = [*singles, *batch, later]

        # No job file was synced, only the journal: the cut empties every one of them.
        emptied = power.cut()
    files = job_files(spool_path)
    assert sorted(emptied) == sorted(str(p.relative_to(spool_path)) for p in files)
    assert len(files) == 9
    assert all(p.read_bytes() == b"" for p in files)
    assert [line["id"] for line in journal_lines(spool_path)] == [h.id for h in handles]

    # Before any worker mends them, `jobq status` shows the jobs as they were enqueued.
    code, info = jobq_json(spool_path, "status", singles[1].id)
    assert (code, info["state"], info["name"]) == (0, "pending", "e2e.add")
    assert info["enqueued_at"] is not None  # read from the journal's copy of the job file
    code, info = jobq_json(spool_path, "status", later.id)
    assert (code, info["state"], info["name"]) == (0, "scheduled", "e2e.add")

    worker = worker_process("apps.e2e", "--spool", str(spool_path))
    results = [await h.result(timeout=30) for h in handles]
    assert worker.stop() == 0
    assert results == [n + 1 for n in range(4)] + [n + 2 for n in range(4)] + [14]
    assert list((spool_path / "invalid").iterdir()) == []  # mended, not quarantined
    code, stats = jobq_json(spool_path, "status")
    assert (stats["queues"]["default"]["done"], stats["invalid"]) == (9, 0)


@pytest.mark.anyio
async def test_a_retired_journal_is_empty_and_its_jobs_synced(
    spool_path: Path, journaled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "RETIRE_AFTER", 0.05)
    power = PowerCut(spool_path)
    power.install(monkeypatch)
    handles = [await e2e.add.enqueue(n, 1) for n in range(3)]
    segments = sorted((spool_path / "journals").glob("*.jsonl"))
    assert len(segments) == 2  # one written while the other retires

    wait_for(lambda: all(p.stat().st_size == 0 for p in segments), "the journal to retire")
    assert power.cut() == []  # the filesystem was synced before the lines went
    for handle in handles:
        code, info = jobq_json(spool_path, "status", handle.id)
        assert (code, info["state"]) == (0, "pending")
    assert all(p.read_bytes() != b"" for p in job_files(spool_path))


@pytest.mark.anyio
async def test_an_enqueue_whose_journal_cannot_be_flushed_publishes_nothing(
    spool_path: Path, journaled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    await e2e.add.enqueue(0, 0)  # the spool and its journal exist

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(jobq.SpoolError) as single:
        await e2e.add.enqueue(1, 1)
    assert single.value.errno == errno.EIO
    with pytest.raises(jobq.SpoolError):
        await e2e.add.enqueue_many([(2, 2), (3, 3)])
    assert len(job_files(spool_path)) == 1  # only the first job
    assert list((spool_path / "tmp").iterdir()) == []


# -- every reader mends ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_reaper_gives_back_an_emptied_job_whole(spool_path: Path, journaled: None) -> None:
    handle = await e2e.add.enqueue(20, 22)
    spool, held = claimed_by_dead_worker(spool_path)
    line = journal.lookup(str(spool_path), handle.id)
    Path(held.path).write_bytes(b"")  # the claimed file, as a power cut left it
    touch_back(Path(spool.worker_file(DEAD_WORKER)), 5.0)

    assert reap_expired(spool, "me.1.aaaaaa", lease=1.0) == [DEAD_WORKER]
    (back,) = job_files(spool_path)
    assert back.parent.name == "pending"
    assert back.read_bytes() == line
    await jobq.Worker(spool_path, lease=5.0).run(burst=True)
    assert await handle.result(timeout=5) == 42
    assert list((spool_path / "invalid").iterdir()) == []


def test_cancelling_an_emptied_job_records_it_whole(spool_path: Path, journaled: None) -> None:
    handle = e2e.add.enqueue_sync(1, 2)
    (pending,) = job_files(spool_path)
    pending.write_bytes(b"")

    cancelled = run_jobq("cancel", handle.id, "--spool", str(spool_path))
    assert cancelled.returncode == 0, cancelled.stderr
    code, info = jobq_json(spool_path, "status", handle.id)
    assert (code, info["state"], info["name"]) == (0, "cancelled", "e2e.add")
    record = json.loads((spool_path / "cancelled" / "default" / f"{handle.id}.json").read_bytes())
    assert (record["name"], record["args"]) == ("e2e.add", [1, 2])
    assert list((spool_path / "invalid").iterdir()) == []


@pytest.mark.anyio
async def test_an_emptied_waiting_job_is_released_whole(spool_path: Path, journaled: None) -> None:
    first = await e2e.add.enqueue(1, 1)
    then = await e2e.add.options(after=[first]).enqueue(2, 2)
    (waiting,) = (spool_path / "queues" / "default" / "waiting").iterdir()
    waiting.write_bytes(b"")

    await jobq.Worker(spool_path, lease=5.0).run(burst=True)
    assert (await first.result(timeout=5), await then.result(timeout=5)) == (2, 4)
    assert list((spool_path / "invalid").iterdir()) == []


@pytest.mark.anyio
async def test_a_commit_cut_with_the_moved_job_file_emptied_is_completed(
    spool_path: Path, journaled: None
) -> None:
    handle = await e2e.add.enqueue(2, 3)
    outcome = {"state": "done", "attempts": 1, "result": 5, "error": None}
    die_mid_commit(spool_path, lambda job: json.dumps(job | outcome).encode())
    bare = spool_path / "done" / "default" / f"{handle.id}.json"
    bare.write_bytes(b"")  # the job file the commit moved there, as a power cut left it

    code, info = jobq_json(spool_path, "status", handle.id)
    assert (code, info["state"], info["result"]) == (0, "done", 5)
    assert list((spool_path / "invalid").iterdir()) == []
    assert list((spool_path / "tmp").iterdir()) == []


def test_an_append_that_fails_halfway_leaves_no_torn_line(
    spool_path: Path, journaled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    e2e.add.enqueue_sync(0, 0)
    real_write = os.write
    armed = [True]

    def write(fd: int, data: bytes) -> int:
        if armed[0] and bytes(data).endswith(b"\n"):  # the journal's append
            armed[0] = False
            real_write(fd, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(jobq.SpoolError):
        e2e.add.enqueue_sync(1, 1)
    after = e2e.add.enqueue_sync(2, 2)
    assert len(job_files(spool_path)) == 2  # the failed one was taken back
    assert journal.lookup(str(spool_path), after.id) is not None
    for path in (spool_path / "journals").glob("*.jsonl"):
        assert all(json.loads(line) for line in path.read_bytes().splitlines())


def test_a_collector_removes_what_a_producer_left_while_creating_its_journal(
    spool_path: Path,
) -> None:
    e2e.add.enqueue_sync(0, 0)
    (spool_path / "journals").mkdir()
    leftover = spool_path / "journals" / ".vm.123.abcd.0"  # died before renaming it in place
    leftover.write_bytes(b"")
    assert SpoolDir(spool_path).collect_journals() == 0  # may be a producer creating it now
    touch_back(leftover, 120.0)
    assert SpoolDir(spool_path).collect_journals() == 1
    assert not leftover.exists()


def test_after_a_failed_sync_a_producer_leaves_its_journal_whole_to_a_worker(
    spool_path: Path, journaled: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "RETIRE_AFTER", 0.05)
    real_syncfs = files._syncfs

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(files, "_syncfs", failing)
    first = e2e.add.enqueue_sync(1, 1)
    segments = sorted((spool_path / "journals").glob("*.jsonl"))
    wait_for(lambda: _unlocked(segments), "the producer to let go of its journal")
    assert SpoolDir(spool_path).collect_journals() == 0  # the disk still fails: kept
    assert [line["id"] for line in journal_lines(spool_path)] == [first.id]  # kept whole
    second = e2e.add.enqueue_sync(2, 2)  # into a new pair
    assert len(list((spool_path / "journals").glob("*.jsonl"))) == 4

    monkeypatch.setattr(files, "_syncfs", real_syncfs)
    assert SpoolDir(spool_path).collect_journals() == 2  # the pair it let go of
    assert journal.lookup(str(spool_path), first.id) is None
    assert journal.lookup(str(spool_path), second.id) is not None
    assert len(job_files(spool_path)) == 2


def _unlocked(paths: list[Path]) -> bool:
    """Whether no process holds the ``flock`` of any of ``paths``."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
    return True


# -- producers that end -------------------------------------------------------------------


def test_a_producer_that_exits_removes_its_journal(spool_path: Path) -> None:
    ids = produce(spool_path, 5, "exit")
    assert len(ids) == 5
    assert list((spool_path / "journals").iterdir()) == []
    assert len(job_files(spool_path)) == 5


def test_a_killed_producers_journal_mends_its_jobs_then_goes(
    spool_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    ids = produce(spool_path, 6, "killed")
    assert [line["id"] for line in journal_lines(spool_path)] == ids
    # What a power cut right after the kill leaves: the job files' data was never synced.
    for path in job_files(spool_path):
        path.write_bytes(b"")

    worker = worker_process("apps.e2e", "--spool", str(spool_path), "--burst")
    assert worker.wait() == 0, worker.output()
    for n, job_id in enumerate(ids):
        code, info = jobq_json(spool_path, "status", job_id)
        assert (code, info["state"], info["result"]) == (0, "done", n + 100)
    assert list((spool_path / "invalid").iterdir()) == []
    assert list((spool_path / "journals").iterdir()) == []  # mended, synced, removed


def test_a_worker_mends_a_dead_producers_jobs_before_removing_its_journal(
    spool_path: Path,
) -> None:
    ids = produce(spool_path, 3, "killed")
    for path in job_files(spool_path):
        path.write_bytes(b"")
    assert SpoolDir(spool_path).collect_journals() == 2
    assert list((spool_path / "journals").iterdir()) == []
    assert all(p.read_bytes() != b"" for p in job_files(spool_path))
    shown = run_jobq("jobs", "--state", "pending", "--json", "--spool", str(spool_path))
    assert sorted(r["id"] for r in json.loads(shown.stdout)) == sorted(ids)


def test_a_dead_producers_journal_goes_once_its_jobs_finished_or_are_gone(
    spool_path: Path,
) -> None:
    ids = produce(spool_path, 3, "killed")
    for job_id in ids:  # finished without a worker (whose housekeeping would collect)
        assert run_jobq("cancel", job_id, "--spool", str(spool_path)).returncode == 0
    records = spool_path / "cancelled" / "default"
    (records / f"{ids[0]}.json").write_bytes(b"")  # damaged by a power cut
    old = time.time() - 7200
    os.utime(records / f"{ids[2]}.json", (old, old))
    purged = run_jobq("purge", "--older-than", "1h", "--spool", str(spool_path))
    assert purged.returncode == 0, purged.stderr
    assert not (records / f"{ids[2]}.json").exists()  # purged: found nowhere

    # The damaged record is not settled: the segment naming it stays (its empty twin goes).
    assert SpoolDir(spool_path).collect_journals() == 1
    assert len(list((spool_path / "journals").iterdir())) == 1
    code, info = jobq_json(spool_path, "status", ids[0])  # meets it: quarantined
    assert (code, info["state"]) == (1, "invalid")
    assert SpoolDir(spool_path).collect_journals() == 1
    assert list((spool_path / "journals").iterdir()) == []


# -- which filesystems ---------------------------------------------------------------------


def test_only_filesystems_that_keep_metadata_in_order_use_a_journal(tmp_path: Path) -> None:
    journal.ordered_metadata.cache_clear()
    assert journal.ordered_metadata("/proc") is False
    assert journal.ordered_metadata("/dev/shm") is False  # tmpfs
    if filesystem_type(str(tmp_path)) not in ("ext4", "xfs"):
        assert journal.ordered_metadata(str(tmp_path)) is False


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("mkfs.ext4"), reason="mounts loop filesystems (root)"
)


@needs_root
@pytest.mark.parametrize("with_journal", [True, False])
def test_ext4_is_judged_by_its_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_journal: bool
) -> None:
    image, mount = tmp_path / "fs.img", tmp_path / "mnt"
    mount.mkdir()
    with image.open("wb") as f:
        f.truncate(64 << 20)
    features = [] if with_journal else ["-O", "^has_journal"]
    subprocess.run(["mkfs.ext4", "-q", "-F", *features, str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True)
    try:
        journal.ordered_metadata.cache_clear()
        journal.entry_synced_with_file.cache_clear()
        jobq.waiting.mount_of.cache_clear()
        monkeypatch.setattr(journal, "FORCE", None)  # judged by the filesystem itself
        assert journal.ordered_metadata(str(mount)) is with_journal
        assert journal.entry_synced_with_file(str(mount)) is not with_journal
        done = subprocess.run(
            [sys.executable, "-c", PRODUCER.replace("journal.FORCE = True", ""),
             str(mount / "spool"), "2", "killed"],
            cwd=TESTS, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == -signal.SIGKILL, done.stderr
        journals = list((mount / "spool" / "journals").glob("*.jsonl"))
        assert len(journals) == (2 if with_journal else 0)
    finally:
        journal.ordered_metadata.cache_clear()
        journal.entry_synced_with_file.cache_clear()
        jobq.waiting.mount_of.cache_clear()
        subprocess.run(["umount", str(mount)], check=False)


# -- ext4 without a journal: the name rides with the file's fsync -----------------------------


@pytest.fixture
def synced_after_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    """Durable single enqueues of this process rename first, then fsync the file."""
    monkeypatch.setattr(journal, "FORCE_ENTRY", True)


@pytest.mark.anyio
async def test_a_file_fsynced_after_its_rename_survives_a_power_cut(
    spool_path: Path, synced_after_rename: None, worker_process: Callable[..., WorkerProcess]
) -> None:
    power = PowerCut(spool_path)
    with pytest.MonkeyPatch.context() as patch:
        power.install(patch)
        handles = [await e2e.add.enqueue(n, 10) for n in range(3)]
        handles.append(await e2e.add.options(delay=0.5).enqueue(5, 5))
        emptied = power.cut()
    assert [e for e in emptied if e.startswith("queues/")] == []  # every job file synced
    assert not (spool_path / "journals").exists()
    worker = worker_process("apps.e2e", "--spool", str(spool_path))
    assert [await h.result(timeout=30) for h in handles] == [10, 11, 12, 10]
    assert worker.stop() == 0


def test_an_enqueue_whose_file_cannot_be_synced_after_its_rename_publishes_nothing(
    spool_path: Path, synced_after_rename: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    e2e.add.enqueue_sync(0, 0)
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).endswith(".json"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(jobq.SpoolError) as failed:
        e2e.add.enqueue_sync(1, 1)
    assert failed.value.errno == errno.EIO
    assert len(job_files(spool_path)) == 1
    assert list((spool_path / "tmp").iterdir()) == []


def test_the_directory_is_synced_too_when_it_grew(
    spool_path: Path, synced_after_rename: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ext4 without a journal: the file's fsync writes the directory block holding its new
    name, not the directory's inode, which changes when the directory grows a block."""
    real_fsync = os.fsync
    synced_dirs: list[int] = []

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode) and os.readlink(f"/proc/self/fd/{fd}").endswith("pending"):
            synced_dirs.append(st.st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    pending = spool_path / "queues" / "default" / "pending"
    sizes = []
    for n in range(300):
        e2e.add.enqueue_sync(n, 0)
        sizes.append(pending.stat().st_size)
    grown = [b for a, b in zip([None, *sizes], sizes, strict=False) if a != b]
    assert len(grown) >= 3  # the test grew the directory a few times
    assert synced_dirs == grown  # synced exactly when it had grown, at each new size
