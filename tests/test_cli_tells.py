"""What the command line tells: quarantined files, progress, ``--watch``, and one-line errors.

Exit codes and error lines are checked through the installed ``jobq`` entry point, as a shell
script or a service manager would see them. Permission, read-only and full-disk cases need
root (to act as another user, or to mount a small tmpfs); they are skipped without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from apps import observed
from conftest import TESTS, jobq_command, run_jobq

import jobq

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = os.geteuid() == 0


def one_line_error(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The command failed with ``code`` and one ``jobq:`` line on stderr; that line."""
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("jobq: "), lines
    assert "Traceback" not in done.stderr
    return lines[0]


def one_jobq_line(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """Like ``one_line_error`` for ``jobq worker``, whose log lines may come before."""
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("jobq:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def burst(spool: Path) -> None:
    anyio.run(lambda: jobq.Worker(jobq.Spool(spool), queues=["default", "cpu"]).run(burst=True))


def quarantine_one(spool: Path) -> None:
    """Drop a corrupt job file into pending/ and let a worker quarantine it."""
    observed.ok.enqueue_sync(0)  # the spool and its default queue exist
    (spool / "queues" / "default" / "pending" / f"10000-{'2' * 16}-cafe-0.json").write_text("[")
    burst(spool)


# -- quarantined files ---------------------------------------------------------------------


def test_status_counts_quarantined_files(spool_path: Path) -> None:
    clean = run_jobq("status", "--json", "--spool", str(spool_path / "not-yet"))
    assert clean.returncode == 1
    quarantine_one(spool_path)
    done = run_jobq("status", "--json", "--spool", str(spool_path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["invalid"] == 1
    human = run_jobq("status", "--spool", str(spool_path))
    assert human.returncode == 0, human.stderr
    assert "invalid: 1 quarantined file(s), see `jobq jobs --state invalid`" in human.stdout


def test_status_says_nothing_of_invalid_files_when_there_are_none(spool_path: Path) -> None:
    observed.ok.enqueue_sync(0)
    done = run_jobq("status", "--spool", str(spool_path))
    as_json = run_jobq("status", "--json", "--spool", str(spool_path))
    assert json.loads(as_json.stdout)["invalid"] == 0
    assert "invalid" not in done.stdout


def test_jobs_state_invalid_lists_files_and_reasons(spool_path: Path) -> None:
    quarantine_one(spool_path)
    done = run_jobq("jobs", "--state", "invalid", "--json", "--spool", str(spool_path))
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["state"] == "invalid"
    assert row["file"] == f"default@10000-{'2' * 16}-cafe-1.json"
    assert row["path"] == str(spool_path / "invalid" / row["file"])
    assert row["reason"].startswith("corrupt job file: ")
    assert row["quarantined_at"] == pytest.approx(time.time(), abs=60)
    assert Path(row["path"]).read_text() == "["  # kept byte for byte

    human = run_jobq("jobs", "--state", "invalid", "--spool", str(spool_path))
    header, line = human.stdout.splitlines()
    assert header.split() == ["quarantined", "file", "reason"]
    assert row["file"] in line
    assert "corrupt job file: " in line
    assert header.index("file") == line.index(row["file"])  # aligned


# -- one job: progress, truncation ---------------------------------------------------------


def test_status_of_a_job_carries_its_progress(spool_path: Path) -> None:
    handle = observed.progress.enqueue_sync(3)
    before = json.loads(run_jobq("status", handle.id, "--json", "--spool", str(spool_path)).stdout)
    assert before["progress"] is None
    burst(spool_path)
    done = run_jobq("status", handle.id, "--json", "--spool", str(spool_path))
    info = json.loads(done.stdout)
    assert info["state"] == "done"
    progress = info["progress"]
    assert set(progress) == {"done", "total", "message", "at"}
    assert (progress["done"], progress["total"], progress["message"]) == (3, 3, "done")
    assert progress["at"] == pytest.approx(time.time(), abs=60)
    assert handle.info_sync()["progress"] == progress
    human = run_jobq("status", handle.id, "--spool", str(spool_path))
    assert re.search(r"^progress:\s+3/3 done$", human.stdout, re.MULTILINE), human.stdout


def test_status_of_a_job_truncates_huge_values_but_json_stays_whole(spool_path: Path) -> None:
    huge = "x" * 50_000
    handle = observed.echo.enqueue_sync(huge)
    burst(spool_path)
    human = run_jobq("status", handle.id, "--spool", str(spool_path))
    assert human.returncode == 0, human.stderr
    assert max(len(line) for line in human.stdout.splitlines()) < 600
    assert human.stdout.count("--json prints them whole") == 2  # args and result
    assert "50,002 chars in all" in human.stdout  # the JSON string with its quotes
    whole = json.loads(run_jobq("status", handle.id, "--json", "--spool", str(spool_path)).stdout)
    assert whole["result"] == huge


# -- handles for sync code -----------------------------------------------------------------


def test_handles_have_sync_twins(spool_path: Path) -> None:
    first = observed.ok.enqueue_sync(1)
    second = observed.ok.enqueue_sync(2)
    assert first.state_sync() == "pending"
    info = first.info_sync()
    assert (info["id"], info["state"], info["progress"]) == (first.id, "pending", None)
    assert first.cancel_sync() is True
    assert first.cancel_sync() is False  # already finished (cancelled)
    assert first.state_sync() == "cancelled"
    burst(spool_path)
    assert second.state_sync() == "done"
    assert second.info_sync()["result"] == 4
    assert second.log_sync() == ""
    purged = run_jobq("purge", "--state", "cancelled", "--older-than", "0s",
                      "--spool", str(spool_path))  # fmt: skip
    assert purged.stdout == "removed 1 record(s)\n"
    with pytest.raises(jobq.JobNotFound):
        first.state_sync()
    with pytest.raises(jobq.JobNotFound):
        first.info_sync()
    with pytest.raises(jobq.JobNotFound):
        first.cancel_sync()


@pytest.mark.anyio
async def test_sync_twins_agree_with_the_async_methods(
    spool_path: Path, anyio_backend: str
) -> None:
    handle = await observed.ok.enqueue(5)
    assert await handle.state() == handle.state_sync()
    assert await handle.info() == handle.info_sync()


# -- status --watch ------------------------------------------------------------------------


def test_status_watch_redraws_in_place_and_stops_cleanly_on_ctrl_c(
    spool_path: Path, tmp_path: Path
) -> None:
    observed.ok.enqueue_sync(1)
    out = tmp_path / "watch.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            jobq_command("status", "--watch", "--interval", "0.1", "--spool", str(spool_path)),
            stdout=sink,
            stderr=subprocess.PIPE,
        )
    try:
        deadline = time.monotonic() + 20
        while out.read_bytes().count(b"\x1b[H") < 3:
            assert time.monotonic() < deadline, out.read_bytes()
            time.sleep(0.02)
        observed.ok.enqueue_sync(2)  # the next frame shows it
        seen = out.read_bytes().count(b"\x1b[H")
        while out.read_bytes().count(b"\x1b[H") < seen + 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert err == b""  # no traceback
    text = out.read_bytes().decode()
    assert text.startswith("\x1b[2J")  # cleared once, then every frame goes home
    assert text.count("\x1b[2J") == 1
    frames = [f for f in text.split("\x1b[H")[1:] if f.strip()]
    assert len(frames) >= 4
    # Each frame overwrites the last: lines end by clearing the rest of the line, and the
    # frame ends by clearing below it, so nothing scrolls.
    assert all(f.rstrip("\n").endswith("\x1b[J") or f.endswith("\x1b[J\n") for f in frames[:-1])
    first, last = frames[0], frames[-2]
    assert "(Ctrl-C to stop)" in first
    pending = [line for line in first.split("\x1b[K\n") if line.startswith("default")]
    assert pending[0].split()[1] == "1"
    pending = [line for line in last.split("\x1b[K\n") if line.startswith("default")]
    assert pending[0].split()[1] == "2"


def test_status_watch_of_one_job(spool_path: Path, tmp_path: Path) -> None:
    handle = observed.ok.enqueue_sync(7)
    out = tmp_path / "watch.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            jobq_command("status", handle.id, "--watch", "--interval", "0.1",
                         "--spool", str(spool_path)),
            stdout=sink, stderr=subprocess.PIPE,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while b"state:       pending" not in out.read_bytes():
            assert time.monotonic() < deadline, out.read_bytes()
            time.sleep(0.02)
        burst(spool_path)
        while b"state:       done" not in out.read_bytes():
            assert time.monotonic() < deadline, out.read_bytes()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err) == (0, b"")
    assert b"result:      14" in out.read_bytes()


def test_status_watch_rejects_json(spool_path: Path) -> None:
    done = run_jobq("status", "--watch", "--json", "--spool", str(spool_path))
    assert done.returncode == 2
    assert "--watch" in done.stderr
    assert "Traceback" not in done.stderr


# -- job ids that match nothing, paths that are not spools ---------------------------------

ODD_IDS = ["../x", "a b", "ünïcødé", "x" * 300, "a\nb", "$(rm -rf ~)", "0123456789abcdef"]


@pytest.mark.parametrize("job_id", ODD_IDS)
def test_a_job_id_that_matches_nothing_is_not_found(spool_path: Path, job_id: str) -> None:
    observed.ok.enqueue_sync(0)
    for command in (["status"], ["status", "--json"], ["logs"], ["cancel"], ["retry"]):
        done = run_jobq(*command, job_id, "--spool", str(spool_path))
        line = one_line_error(done, 1)
        assert line.startswith("jobq: no job "), line
        assert str(spool_path) in line


@pytest.fixture(params=["missing", "empty-dir", "a-file", "other-dir"])
def not_a_spool(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    path = tmp_path / "nospool"
    if request.param == "empty-dir":
        path.mkdir()
    elif request.param == "a-file":
        path.write_text("hello")
    elif request.param == "other-dir":
        path.mkdir()
        (path / "queues").mkdir()  # looks a bit like one, but has no format marker
        (path / "notes.txt").write_text("mine")
    return path


def test_read_commands_refuse_a_path_that_is_not_a_spool(not_a_spool: Path) -> None:
    before = sorted(not_a_spool.rglob("*")) if not_a_spool.is_dir() else None
    for command in (
        ["status"], ["status", "--json"], ["status", "0123456789abcdef"], ["jobs"],
        ["jobs", "--json", "--state", "invalid"], ["logs", "0123456789abcdef"],
        ["cancel", "0123456789abcdef"], ["retry", "--failed"], ["purge"],
        ["status", "--watch"],
    ):  # fmt: skip
        done = run_jobq(*command, "--spool", str(not_a_spool))
        line = one_line_error(done, 1)
        assert line.startswith(f"jobq: no spool at {not_a_spool} "), (command, line)
    # The same through $JOBQ_SPOOL.
    env = {**os.environ, "JOBQ_SPOOL": str(not_a_spool)}
    done = subprocess.run(
        jobq_command("jobs"), capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert one_line_error(done).startswith(f"jobq: no spool at {not_a_spool} ")
    # Nothing was created.
    if before is None:
        assert not not_a_spool.is_dir()
    else:
        assert sorted(not_a_spool.rglob("*")) == before


def test_producers_still_create_a_spool(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    done = run_jobq("enqueue", "observed.ok", "--args", "[1]", "--spool", str(fresh))
    assert done.returncode == 0, done.stderr
    assert run_jobq("status", "--spool", str(fresh)).returncode == 0


# -- broken apps ---------------------------------------------------------------------------


def test_an_app_that_raises_at_import_is_one_line(spool_path: Path, tmp_path: Path) -> None:
    done = run_jobq("worker", "apps.import_error_app", "--spool", str(spool_path), "--burst",
                    cwd=TESTS)  # fmt: skip
    line = one_line_error(done, 2)
    assert line.startswith("jobq: app module 'apps.import_error_app' raised KeyError while")
    assert "import_error_app.py:7" in line
    assert "JOBQ_TEST_SURELY_UNSET_DATABASE_URL" in line

    bad_syntax = tmp_path / "half_written.py"
    bad_syntax.write_text("import jobq\n\n@jobq.job\ndef oops(:\n    pass\n")
    done = run_jobq("worker", str(bad_syntax), "--spool", str(spool_path), "--burst")
    line = one_line_error(done, 2)
    assert "raised SyntaxError while importing" in line
    assert "half_written.py, line 4" in line


# -- the filesystem says no ----------------------------------------------------------------


def without_root_powers() -> list[str]:
    """A command prefix under which file permissions apply, even to root."""
    if not ROOT:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("as root, checking permissions needs setpriv (util-linux)")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]


@pytest.fixture
def locked_spool(tmp_path: Path) -> Iterator[Path]:
    """A spool (with one job) whose directory nobody may enter (mode 000)."""
    spool = tmp_path / "spool"
    made = run_jobq("enqueue", "observed.ok", "--args", "[1]", "--spool", str(spool))
    assert made.returncode == 0, made.stderr
    spool.chmod(0o000)
    try:
        yield spool
    finally:
        spool.chmod(0o700)


def test_permission_denied_is_one_line(locked_spool: Path) -> None:
    prefix = without_root_powers()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *jobq_command(*args, "--spool", str(locked_spool))],
            capture_output=True, text=True, timeout=120, check=False, cwd=TESTS,
        )  # fmt: skip

    for command in (["status"], ["jobs"], ["logs", "0123456789abcdef"]):
        line = one_line_error(run(*command), 1)
        assert line == f"jobq: cannot read the spool at {locked_spool}: Permission denied"
    line = one_line_error(run("enqueue", "observed.ok"), 1)
    assert "Permission denied" in line
    line = one_jobq_line(run("worker", "apps.observed", "--burst"), 1)
    assert "Permission denied" in line
    line = one_line_error(run("bench", "--jobs", "20", "--json"), 1)
    assert "Permission denied" in line


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards (needs root)."""
    if not ROOT:
        pytest.skip("mounting a tmpfs needs root")
    mount = Path(tempfile.mkdtemp(prefix="jobq-tmpfs-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        with contextlib.suppress(OSError):
            mount.rmdir()


def test_a_read_only_filesystem_is_one_line(small_tmpfs: Path) -> None:
    spool = small_tmpfs / "spool"
    made = run_jobq("enqueue", "observed.ok", "--args", "[1]", "--spool", str(spool))
    assert made.returncode == 0, made.stderr
    remount = ["mount", "-o", "remount,ro", str(small_tmpfs)]
    subprocess.run(remount, check=True, capture_output=True)

    for command in (
        ["enqueue", "observed.ok"], ["bench", "--jobs", "20", "--json"],
        ["worker", "apps.observed", "--burst"], ["cancel", "0123456789abcdef"],
    ):  # fmt: skip
        done = run_jobq(*command, "--spool", str(spool), cwd=TESTS)
        line = (one_jobq_line if command[0] == "worker" else one_line_error)(done, 1)
        assert "Read-only file system" in line or "no job" in line, (command, line)
    # Reading a read-only spool still works.
    done = run_jobq("status", "--json", "--spool", str(spool))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["queues"]["default"]["pending"] == 1


def test_a_full_disk_is_one_line(small_tmpfs: Path) -> None:
    spool = small_tmpfs / "spool"
    made = run_jobq("enqueue", "observed.ok", "--args", "[1]", "--spool", str(spool))
    assert made.returncode == 0, made.stderr
    with contextlib.suppress(OSError), (small_tmpfs / "filler").open("wb") as f:
        while True:
            f.write(b"\0" * 65536)
            f.flush()

    for command in (["enqueue", "observed.ok"], ["bench", "--jobs", "20", "--json"]):
        done = run_jobq(*command, "--spool", str(spool), cwd=TESTS)
        line = one_line_error(done, 1)
        assert "No space left on device" in line, (command, line)
    # The progress bar of the human form goes to stderr too; still a single jobq: line.
    done = run_jobq("bench", "--jobs", "20", "--spool", str(spool))
    assert done.returncode == 1
    assert [x for x in done.stderr.splitlines() if x.startswith("jobq:")] != []
    assert len([x for x in done.stderr.splitlines() if x.startswith("jobq:")]) == 1
    assert "Traceback" not in done.stderr


# -- jobs: order and columns ---------------------------------------------------------------


def test_jobs_sorts_by_enqueue_time_also_for_keyed_ids_and_aligns_columns(
    spool_path: Path,
) -> None:
    handles = []
    for n, key in enumerate(["zebra", "apple", "mango", "kiwi", "fig", "plum"]):
        handles.append(observed.ok.options(key=key).enqueue_sync(n))
        time.sleep(0.002)  # enqueue times compare to the millisecond
        handles.append(observed.ok.enqueue_sync(n))
        time.sleep(0.002)
    handles.append(observed.echo.options(queue="a-much-longer-queue-name").enqueue_sync("x"))
    anyio.run(
        lambda: jobq.Worker(
            jobq.Spool(spool_path), queues=["default", "a-much-longer-queue-name"]
        ).run(burst=True)
    )
    done = run_jobq("jobs", "--state", "done", "--json", "--spool", str(spool_path))
    rows = json.loads(done.stdout)
    assert [r["id"] for r in rows] == [h.id for h in reversed(handles)]  # newest first
    stamps = [r["enqueued_at"] for r in rows]
    assert stamps == sorted(stamps, reverse=True)

    human = run_jobq("jobs", "--spool", str(spool_path)).stdout.splitlines()
    header, body = human[0], human[1:]
    assert header.split() == ["id", "state", "queue", "attempts", "enqueued", "name"]
    assert len(body) == len(handles)
    for column in ("state", "queue", "enqueued", "name"):
        at = header.index(column)
        assert all(line[at - 2 : at] == "  " and line[at] != " " for line in body), column
    keyed = [line for line in body if line.startswith("k")]
    assert len(keyed) == 6
