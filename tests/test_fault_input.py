"""Bad input loses nothing: corrupt job files, unknown names, dead producers, full disks.

Corrupt files are dropped into a queue next to good jobs and a real ``jobq worker`` process
runs them all; half-written temp files and a commit cut between its two renames are cleaned
up; ENOSPC, EACCES, EIO and EROFS while enqueueing raise ``jobq.SpoolError`` and publish
nothing; hostile names never reach a path outside the spool.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import fault_app
import pytest
from click.testing import CliRunner
from conftest import die_mid_commit

import jobq
from jobq.cli import main as cli
from jobq.spool import SpoolDir

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

TESTS = Path(__file__).resolve().parent
JOBQ = os.path.join(os.path.dirname(sys.executable), "jobq")


def job_file(job_id: str, **fields: Any) -> tuple[str, bytes]:
    """A pending job file as a foreign producer writes it (docs/spool-format.md)."""
    body = {"format": 1, "id": job_id, "name": "fault_app.mark", "queue": "default", "args": []}
    body.update(fields)
    return f"10000-{int(time.time() * 1e6):016d}-{job_id}-0.json", json.dumps(body).encode()


def published(spool: Path) -> list[str]:
    """Every file in the places a job can be published to or staged in."""
    found = []
    for sub in ("tmp", "queues", "keys"):
        found += [str(p.relative_to(spool)) for p in (spool / sub).rglob("*") if p.is_file()]
    return sorted(found)


# -- corrupt files and unknown names, with a real worker -----------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_corrupt_files_are_quarantined_while_other_jobs_complete(
    spool_path: Path, tmp_path: Path, backend: str
) -> None:
    out = tmp_path / "effects"
    good = [fault_app.mark.enqueue_sync(str(out)) for _ in range(10)]
    pending = spool_path / "queues" / "default" / "pending"
    name, valid = job_file("foreign1", args=[str(out)])  # a job written by another program
    (pending / name).write_bytes(valid)
    bad: dict[str, bytes] = {
        "truncated": job_file("trunc1")[1][:25],
        "wrong version": job_file("vers1", format=99)[1],
        "not JSON": b"\x00\xff\xfe this is not json \x80",
        "a JSON array": b"[1, 2, 3]",
        "hostile queue": job_file("escape1", queue="../../../outside")[1],
        "id not matching the name": job_file("other1")[1],
    }
    names = {
        "truncated": job_file("trunc1")[0],
        "wrong version": job_file("vers1")[0],
        "not JSON": job_file("notjson1")[0],
        "a JSON array": job_file("array1")[0],
        "hostile queue": job_file("escape1")[0],
        "id not matching the name": job_file("named1")[0],
    }
    for kind, data in bad.items():
        (pending / names[kind]).write_bytes(data)
    (pending / "garbage.json").write_bytes(valid)  # a name that is not a job file name
    bad["bad name"] = valid
    unknown = CliRunner().invoke(
        cli, ["enqueue", "no.such.job", "--args", "[1]", "--spool", str(spool_path)]
    )
    assert unknown.exit_code == 0, unknown.output
    unknown_id = unknown.output.strip()

    worker = subprocess.run(
        [JOBQ, "worker", "fault_app", "--burst", "--backend", backend, "--spool", str(spool_path)],
        cwd=TESTS, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert "Traceback" not in worker.stderr

    for handle in good:
        assert handle.result_sync(timeout=1) == worker_pid(spool_path, handle.id)
    assert json.loads((spool_path / "done" / "default" / "foreign1.json").read_bytes())["result"]
    # Every corrupt file is in invalid/, byte for byte, with a reason beside it.
    invalid = spool_path / "invalid"
    quarantined = {p.read_bytes(): p for p in invalid.iterdir() if not p.name.endswith(".reason")}
    for kind, data in bad.items():
        assert data in quarantined, f"{kind} file not quarantined"
        reason = Path(str(quarantined[data]) + ".reason").read_text()
        assert reason.strip(), kind
    assert len(quarantined) == len(bad)
    reasons = " ".join(p.read_text() for p in invalid.glob("*.reason"))
    for expected in ("not valid JSON", "unsupported format 99", "does not match", "queue name"):
        assert expected in reasons
    assert list(pending.iterdir()) == []
    assert list((spool_path / "running").glob("*/*")) == []
    assert not (tmp_path / "outside").exists()
    # The unknown name fails cleanly, saying what to do.
    record = json.loads((spool_path / "failed" / "default" / f"{unknown_id}.json").read_bytes())
    assert record["error"]["type"] == "jobq.UnknownJob"
    assert "'no.such.job'" in record["error"]["message"]
    assert "import the module" in record["error"]["message"]


def worker_pid(spool: Path, job_id: str) -> int:
    """The pid of the worker that recorded ``job_id``'s outcome."""
    record = json.loads((spool / "done" / "default" / f"{job_id}.json").read_bytes())
    return int(record["worker"].split(".")[-2])


# -- temp files of dead producers, commits cut in half -------------------------------------


def test_collect_tmp_cleans_what_dead_processes_left(tmp_path: Path) -> None:
    spool = SpoolDir(tmp_path / "spool", durable=False)
    spool.ensure_queue("default")
    tmp = tmp_path / "spool" / "tmp"
    old = time.time() - 7200
    half_job = tmp / "1a2b3c.4242.abcd.job"
    half_job.write_bytes(b'{"format": 1, "id": "1a2b3c", "na')  # a producer died writing it
    fresh = tmp / "1a2b3d.4242.abce.job"
    fresh.write_bytes(b'{"format": 1')  # a producer writing right now: left alone
    # A commit cut between its renames: the job is in done/ but its record is still staged.
    _, bare = job_file("cut1", args=["x"])
    record = json.loads(bare) | {"state": "done", "attempts": 1, "result": 7, "error": None}
    (tmp_path / "spool" / "done" / "default" / "cut1.json").write_bytes(bare)
    staged = tmp / "done@default@cut1.4242.abcf.rec"
    staged.write_bytes(json.dumps(record).encode())
    orphan = tmp / "done@default@gone1.4242.abd0.rec"  # its commit never reached the rename
    orphan.write_bytes(b"{}")
    retry = tmp / "cut2.4242.abd1.retry"  # a `jobq retry` cut halfway: keep the record
    retry.write_bytes(bare)
    for path in (half_job, staged, orphan, retry):
        os.utime(path, (old, old))

    assert spool.collect_tmp(3600.0) == 4
    assert sorted(p.name for p in tmp.iterdir()) == [fresh.name]
    done = json.loads((tmp_path / "spool" / "done" / "default" / "cut1.json").read_bytes())
    assert (done["state"], done["result"]) == ("done", 7)
    assert (tmp_path / "spool" / "invalid" / retry.name).read_bytes() == bare
    assert (tmp_path / "spool" / "invalid" / f"{retry.name}.reason").read_text().strip()


@pytest.mark.anyio
async def test_reaper_completes_a_dead_workers_half_done_commit(
    spool_path: Path, tmp_path: Path
) -> None:
    handle = await fault_app.mark.enqueue(str(tmp_path / "effects"))
    # It ran the job, staged its record, made the commit rename, then died (kill -9).
    outcome = {"state": "done", "attempts": 1, "result": 4242, "error": None}
    registration = die_mid_commit(spool_path, lambda job: json.dumps(job | outcome).encode())

    worker = jobq.Worker(lease=1.0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        assert await handle.result(timeout=5) == 4242  # completed by the reaper, at once
        worker.stop()
    assert list((spool_path / "tmp").iterdir()) == []
    assert not registration.exists()


# -- full or refusing filesystems while enqueueing -----------------------------------------


def _raiser(code: int, real: Callable[..., Any], when: Callable[..., bool]) -> Callable[..., Any]:
    def fake(*args: Any, **kwargs: Any) -> Any:
        if when(*args):
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    return fake


def _is_dir_fd(fd: int) -> bool:
    return stat.S_ISDIR(os.fstat(fd).st_mode)


def test_enospc_while_writing_raises_spool_error_and_publishes_nothing(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault_app.mark.enqueue_sync("warm-up")  # the spool exists; now the disk fills up
    before = published(spool_path)
    monkeypatch.setattr(os, "write", _raiser(errno.ENOSPC, os.write, lambda fd, data: True))
    with pytest.raises(jobq.SpoolError) as caught:
        fault_app.mark.options(key="only-once").enqueue_sync("x")
    monkeypatch.undo()
    assert caught.value.errno == errno.ENOSPC
    assert "No space left on device" in str(caught.value)
    assert published(spool_path) == before
    # The deduplication key was given back: the same key enqueues once there is space.
    handle = fault_app.mark.options(key="only-once").enqueue_sync("x")
    assert handle.id in " ".join(published(spool_path))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("what", "code", "when"),
    [
        ("file fsync", errno.ENOSPC, lambda fd: not _is_dir_fd(fd)),
        ("directory fsync", errno.EIO, _is_dir_fd),
    ],
)
async def test_failed_fsync_while_enqueueing_a_batch_publishes_nothing(
    spool_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    what: str,
    code: int,
    when: Callable[[int], bool],
) -> None:
    await fault_app.mark.enqueue("warm-up")
    before = published(spool_path)
    monkeypatch.setattr(os, "fsync", _raiser(code, os.fsync, when))
    if what == "file fsync":  # on a local filesystem a batch's files share one syncfs instead
        monkeypatch.setattr(jobq.spool.files, "_syncfs", _raiser(code, os.fsync, lambda fd: True))
    with pytest.raises(jobq.SpoolError) as caught:
        await fault_app.mark.enqueue_many([("a",), ("b",), ("c",)])
    monkeypatch.undo()
    assert caught.value.errno == code, what
    # Not durable means not enqueued: the caller was told it failed, so no job may run.
    assert published(spool_path) == before


def test_eacces_while_enqueueing_raises_spool_error(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault_app.mark.enqueue_sync("warm-up")
    before = published(spool_path)
    tmp = str(spool_path / "tmp")
    real_open = os.open
    monkeypatch.setattr(
        os, "open", _raiser(errno.EACCES, real_open, lambda path, *a: str(path).startswith(tmp))
    )
    with pytest.raises(jobq.SpoolError, match="Permission denied") as caught:
        fault_app.mark.enqueue_sync("x")
    monkeypatch.undo()
    assert caught.value.errno == errno.EACCES
    assert isinstance(caught.value.__cause__, PermissionError)
    assert published(spool_path) == before


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A real 256 KiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs", str(mount)],
        capture_output=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_and_read_only_filesystem(small_fs: Path) -> None:
    spool = jobq.Spool(small_fs / "spool")

    @spool.job(name="fault_input.store")
    def store(blob: str) -> int:
        return len(blob)

    first = store.enqueue_sync("fits")
    before = published(small_fs / "spool")
    with pytest.raises(jobq.SpoolError) as caught:
        store.enqueue_sync("x" * 400_000)  # larger than the whole filesystem
    assert caught.value.errno == errno.ENOSPC
    assert published(small_fs / "spool") == before  # the partial temp file is gone too
    second = store.enqueue_sync("still fits")  # and the space it took is free again

    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    with pytest.raises(jobq.SpoolError) as caught:
        store.enqueue_sync("read-only")
    assert caught.value.errno == errno.EROFS
    assert "Read-only file system" in str(caught.value)
    queued = " ".join(published(small_fs / "spool"))
    assert first.id in queued
    assert second.id in queued


def test_full_disk_while_recording_fails_that_job_and_the_worker_goes_on(
    small_fs: Path, tmp_path: Path
) -> None:
    spool = small_fs / "spool"

    def enqueue(name: str, args: str) -> str:
        done = CliRunner().invoke(cli, ["enqueue", name, "--args", args, "--spool", str(spool)])
        assert done.exit_code == 0, done.output
        return done.output.strip()

    too_big = enqueue("fault_app.blob", "[400000]")  # its result does not fit on the disk
    small = [enqueue("fault_app.mark", json.dumps([str(tmp_path / "effects")])) for _ in range(5)]
    worker = subprocess.run(
        [JOBQ, "worker", "fault_app", "--burst", "--lease", "1", "--spool", str(spool)],
        cwd=TESTS, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert "cannot record its outcome" in worker.stderr
    for job_id in small:
        assert json.loads((spool / "done" / "default" / f"{job_id}.json").read_bytes())["result"]
    record = json.loads((spool / "failed" / "default" / f"{too_big}.json").read_bytes())
    assert record["error"]["type"] == "jobq.SpoolError"
    assert "No space left on device" in record["error"]["message"]
    assert list((spool / "tmp").iterdir()) == []


@pytest.mark.anyio
async def test_unwritable_log_loses_lines_not_the_job(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handle = await fault_app.chatty.enqueue(3)

    async def full(path: str, text: str) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(jobq.fileio, "append_text", full)
    await jobq.Worker(lease=5).run(burst=True)
    assert await handle.result(timeout=1) == "ok"
    assert "log line(s) lost" in caplog.text


@pytest.mark.anyio
async def test_outcome_that_cannot_be_written_anywhere_keeps_the_job(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handle = await fault_app.chatty.enqueue(0)

    def full(self: SpoolDir, finishes: object) -> list[bool]:
        raise jobq.SpoolError(errno.ENOSPC, "cannot record a job outcome: No space left")

    monkeypatch.setattr(SpoolDir, "commit", full)
    await jobq.Worker(lease=5).run(burst=True)  # it does not die, and it does not spin
    monkeypatch.undo()
    info = await handle.info()
    assert (info["state"], info["attempts"]) == ("scheduled", 1)  # for a later try, not lost
    assert "no outcome recorded" in caplog.text


# -- hostile names never leave the spool ---------------------------------------------------


def test_hostile_names_never_touch_paths_outside_the_spool(
    spool_path: Path, tmp_path: Path
) -> None:
    fault_app.mark.enqueue_sync("x")
    outside = {p for p in tmp_path.parent.rglob("*") if spool_path not in p.parents}
    hostile = ["../x", "../../etc/passwd", "a/b", "..", "/tmp/x", "x\x00y"]
    spool = jobq.Spool(spool_path)
    for name in hostile:
        with pytest.raises(jobq.InvalidName):
            spool.get(name)
        with pytest.raises(jobq.InvalidName):
            fault_app.mark.options(queue=name)
        with pytest.raises(jobq.InvalidName):
            jobq.job(name=name)(fault_app.note)
        for args in (
            ["status", name], ["logs", name], ["cancel", name], ["retry", name],
            ["enqueue", name], ["enqueue", "fault_app.mark", "--queue", name],
            ["jobs", "--queue", name], ["retry", "--failed", "--queue", name],
        ):  # fmt: skip
            result = CliRunner().invoke(cli, [*args, "--spool", str(spool_path)])
            # A job id that matches nothing is "not found" (1), a bad queue or name bad usage.
            is_job_id = args[0] in ("status", "logs", "cancel") or args[:2] == ["retry", name]
            assert result.exit_code == (1 if is_job_id else 2), (args, result.output)
    assert {p for p in tmp_path.parent.rglob("*") if spool_path not in p.parents} == outside


def test_cancel_requests_of_finished_jobs_are_collected(spool_path: Path) -> None:
    """A cancel request that arrives too late does not stay in cancel/ for ever."""
    handle = fault_app.blob.enqueue_sync(3)
    anyio.run(_burst)
    assert handle.result_sync(timeout=5) == "xxx"
    (spool_path / "cancel" / handle.id).touch()  # as if `jobq cancel` raced the finish
    (spool_path / "cancel" / "unknown_job").touch()
    assert SpoolDir(spool_path).collect_cancel_requests() == 1
    assert sorted(p.name for p in (spool_path / "cancel").iterdir()) == ["unknown_job"]


async def _burst() -> None:
    await jobq.Worker(queues=["default"]).run(burst=True)
