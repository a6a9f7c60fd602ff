"""Producer journals: a durable enqueue in one flush where the filesystem keeps order.

A durable job file alone needs two ordered flushes: its data (before its name may count),
then its directory (the name). A journaling filesystem (ext4 with its journal, xfs) commits
metadata in order: flushing any file also makes every earlier rename durable. There a durable
enqueue publishes its job file as a non-durable one does (create, write, rename into the
queue, no sync), then appends the same bytes as one line to its process's journal and
fdatasyncs that: one flush, as Redis's append-only file pays. A power cut can then leave the
job file empty (its name kept, its data lost); whoever reads it mends it from the journal line
(``JobFiles.read_job``), so the job runs as enqueued.

The files: ``journals/HOST.PID.TOKEN.N.jsonl``, N 0 or 1, each line one job file's bytes (so
``cat`` and ``jq`` read them). A process appends to one segment while the other is retired:
a second after the first append since the last retirement it switches segments, syncs the
filesystem (every job file named in the old segment is then durable, wherever it moved since)
and empties the old one. At exit it retires both and removes them; after a failed sync it
lets go of both, whole, and starts a new pair. Each segment is ``flock``ed by its process
while it lives; a segment whose lock is free belongs to a process that let go of it, and a
worker writes the jobs it names again, syncs and removes it (``SpoolDir.collect_journals``).
Stale lines (jobs long finished) are harmless: a line only ever restores a job file that
exists and is empty, torn or holding another job.

Only where both hold: a local filesystem that keeps metadata in order (``ordered_metadata``),
and a ``syncfs`` that reports errors (see ``files._syncfs_usable``). On ext4 without a journal
a single durable enqueue fsyncs its file after the rename instead (``sync_after_rename``);
elsewhere (btrfs, network filesystems) durable enqueues keep their two flushes.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import os
import secrets
import socket
import threading
from typing import TYPE_CHECKING

import orjson

from jobq import layout as L
from jobq.spool import files
from jobq.waiting import mount_of

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

__all__ = (
    "Journal",
    "close_all",
    "entry_synced_with_file",
    "journal_for",
    "lines",
    "lookup",
    "mend_file",
    "ordered_metadata",
    "sync_after_rename",
    "usable",
)

#: Seconds after the first append since the last retirement that a segment is retired
#: (synced with the filesystem and emptied): a crash's leftovers stay small, and a busy
#: producer pays one syncfs a second.
RETIRE_AFTER = 1.0

#: Set by tests to force the choices (None: judged by the filesystem).
FORCE: bool | None = None
FORCE_ENTRY: bool | None = None


@functools.lru_cache(maxsize=16)
def ordered_metadata(root: str) -> bool:
    """Whether ``root``'s filesystem persists metadata changes in order (ext4 with a journal,
    xfs), so that one flush also makes every earlier rename durable."""
    if mount_of(root)[0] == "xfs":
        return True
    found = _ext4_device(root)
    if found is None:
        return False
    name, options = found
    # Without a journal ext4 keeps no order; with data=writeback a committed file may show
    # stale blocks instead of coming back empty. Options set as defaults show here too.
    ordered = "data=ordered" in options or "data=journal" in options
    return ordered and os.path.isdir(f"/proc/fs/jbd2/{name}-8")


@functools.lru_cache(maxsize=16)
def entry_synced_with_file(root: str) -> bool:
    """Whether ``root`` is on ext4 without a journal, whose fsync of a file that was given a
    new name since its last fsync also writes that name's directory (``ext4_sync_parent``):
    a file renamed into place and then fsynced is durable, name and data, in one flush."""
    found = _ext4_device(root)
    return found is not None and not os.path.isdir(f"/proc/fs/jbd2/{found[0]}-8")


def _ext4_device(root: str) -> tuple[str, list[str]] | None:
    """The block device name and mount options of the ext4 filesystem ``root`` is on."""
    fstype, device = mount_of(root)
    if fstype != "ext4" or not device:
        return None
    try:
        name = os.path.basename(os.readlink(f"/sys/dev/block/{device}"))
        with open(f"/proc/fs/ext4/{name}/options", encoding="ascii", errors="replace") as f:
            return name, f.read().split()
    except OSError:
        return None


def usable(root: str) -> bool:
    """Whether durable enqueues into the spool at ``root`` go through a journal."""
    if FORCE is not None:
        return FORCE
    return ordered_metadata(root) and files._syncfs_usable(root)


def sync_after_rename(root: str) -> bool:
    """Whether a durable single enqueue into ``root`` renames its file into place first and
    then fsyncs it, one flush instead of two (see ``entry_synced_with_file``)."""
    if FORCE_ENTRY is not None:
        return FORCE_ENTRY
    return entry_synced_with_file(root)


class Journal:
    """This process's journal in one spool: two segments, one written while the other retires.

    Args:
        root: the spool directory.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._pid = os.getpid()  # a forked child inherits the exit hook, not the journal
        self._lock = threading.Lock()
        self._fds: list[int] = []
        self._paths: list[str] = []
        self._active = 0
        self._lines = [0, 0]  # lines per segment since it was last emptied
        self._timer: threading.Timer | None = None
        self._closed = False
        self._torn = False  # a failed append may have left part of a line
        self._pair = 0  # which pair of segments is open: a new one after _abandon

    def append(self, jobs: Sequence[bytes]) -> None:
        """Append job files' bytes (one line each) and flush them: when this returns, the
        jobs whose files were renamed into place before the call survive a power cut.

        Raises:
            OSError: if the journal cannot be created, written or flushed.
        """
        data = b"".join(job + b"\n" for job in jobs)
        with self._lock:
            if not self._fds:
                self._open()
            active = self._active
            fd = self._fds[active]
            if self._torn:  # end the part of a line a failed append left
                data = b"\n" + data
            size = os.fstat(fd).st_size
            try:
                files.write_all(fd, data)
            except BaseException:
                try:  # take back whatever part of it was written
                    os.ftruncate(fd, size)
                except OSError:
                    self._torn = True
                raise
            self._torn = False
            self._lines[active] += len(jobs)
            self._schedule()
            # Its own descriptor: a close at exit must not pull it from under the flush.
            mine = os.dup(fd)
            _flushing.add(mine)
        # Outside the lock: appends of other threads go on meanwhile. Should a retirement
        # empty the segment first, it synced the filesystem before, jobs included.
        try:
            os.fdatasync(mine)
        finally:
            _flushing.discard(mine)
            os.close(mine)

    def _schedule(self) -> None:
        """Start the retirement timer unless it runs (under the lock)."""
        if self._timer is None and not self._closed:
            timer = threading.Timer(RETIRE_AFTER, self._retire)
            timer.daemon = True
            try:
                timer.start()
            except RuntimeError:  # the interpreter is shutting down: close_all retires
                return
            self._timer = timer

    def _open(self) -> None:
        directory = os.path.join(self.root, L.JOURNALS)
        created = False
        try:
            os.mkdir(directory, 0o700)
            created = True
        except FileExistsError:
            pass
        stem = f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}"
        try:
            for number in (0, 1):
                path = os.path.join(directory, f"{stem}.{number}{L.JOURNAL_SUFFIX}")
                # Locked under a hidden name first: a collector must never find it unlocked.
                hidden = os.path.join(directory, f".{stem}.{number}")
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
                fd = os.open(hidden, flags, 0o600)
                self._fds.append(fd)
                self._paths.append(hidden)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours while we live
                os.rename(hidden, path)
                self._paths[-1] = path
            # The segments' names must be durable before a line in them counts.
            files.fsync_directory(directory)
            if created:
                files.fsync_directory(self.root)
        except BaseException:
            self._discard()
            raise

    def _abandon(self) -> None:
        """Let go of both segments, whole, without removing them (under the lock)."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds, self._paths, self._lines, self._active = [], [], [0, 0], 0
        self._pair += 1

    def _discard(self) -> None:
        for fd in self._fds:
            os.close(fd)
        for path in self._paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._fds, self._paths = [], []

    def _retire(self) -> None:
        """In the timer's thread: switch segments, sync the filesystem, empty the old one."""
        with self._lock:
            self._timer = None
            if self._closed or not self._fds:
                return
            if self._lines[self._active] and not self._lines[1 - self._active]:
                self._active = 1 - self._active  # appends go on in the empty segment
            old = 1 - self._active
            count, fd, pair = self._lines[old], self._fds[old], self._pair
        if count:
            try:
                files._syncfs(fd)
            except OSError:
                # A writeback error is reported once: a second syncfs would succeed with the
                # data lost. Both segments are left as they are, unlocked, for a worker to
                # collect (it writes their jobs again and syncs); appends go to a new pair.
                with self._lock:
                    if self._pair == pair:
                        self._abandon()
                return
            with self._lock, contextlib.suppress(OSError):  # kept: tried again next time
                if not self._closed and self._pair == pair:
                    os.ftruncate(fd, 0)
                    self._lines[old] = 0
        with self._lock:
            if any(self._lines):
                self._schedule()

    def close(self) -> None:
        """Retire both segments and remove them (at exit); kept if the sync fails."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            if self._closed or not self._fds:
                self._closed = True
                return
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            try:
                if any(self._lines):
                    files._syncfs(self._fds[0])
            except OSError:
                self._abandon()  # a worker collects them: mends, syncs, removes
                return
            self._discard()


_journals: dict[tuple[int, str], Journal] = {}
_journals_lock = threading.Lock()
_flushing: set[int] = set()  # descriptors duplicated for a flush in progress


def journal_for(root: str) -> Journal:
    """This process's journal in the spool at ``root`` (a forked child gets its own)."""
    key = (os.getpid(), root)
    with _journals_lock:
        found = _journals.get(key)
        if found is None:
            found = _journals[key] = Journal(root)
        return found


@atexit.register
def close_all() -> None:
    """Retire and remove every journal of this process (at exit)."""
    with _journals_lock:
        mine = [j for (pid, _), j in _journals.items() if pid == os.getpid()]
        _journals.clear()
    for found in mine:
        found.close()


def lines(raw: bytes) -> Iterator[tuple[str, bytes]]:
    """The jobs a journal segment holds: ``(job_id, job file bytes)``; torn lines skipped."""
    for line in raw.split(b"\n"):
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # empty, or torn by a crash while it was appended (never acknowledged)
        if isinstance(data, dict) and isinstance(data.get("id"), str):
            yield data["id"], line


def lookup(root: str, job_id: str) -> bytes | None:
    """The job file bytes some journal in the spool at ``root`` holds for ``job_id``."""
    directory = os.path.join(root, L.JOURNALS)
    for name in files.list_names(directory):
        found = _segment_jobs(os.path.join(directory, name)).get(job_id)
        if found is not None:
            return found
    return None


#: Each segment's jobs by id, with the size and mtime they were read at: after a power cut
#: every emptied job file asks, and a segment is parsed once, not once per job.
_segments: dict[str, tuple[tuple[int, int], dict[str, bytes]]] = {}
_segments_lock = threading.Lock()


def _segment_jobs(path: str) -> dict[str, bytes]:
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            stamp = (st.st_size, st.st_mtime_ns)
            with _segments_lock:
                cached = _segments.get(path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
            jobs = dict(lines(f.read()))
    except OSError:
        return {}
    with _segments_lock:
        if len(_segments) > 256:  # segments of long-gone producers
            _segments.clear()
        _segments[path] = (stamp, jobs)
    return jobs


def mend_file(path: str, data: bytes) -> bool:
    """Write ``data`` back into the existing job file ``path`` and fsync it; False if gone.

    In place, not by rename: a claim may move the file meanwhile, and the data must follow
    it rather than leave a second copy of the job at the old name.
    """
    try:
        fd = os.open(path, os.O_WRONLY)
    except FileNotFoundError:
        return False
    try:
        # Never shorter than it was: a reader meanwhile sees the old bytes or these.
        view, offset = memoryview(data), 0
        while offset < len(data):
            offset += os.pwrite(fd, view[offset:], offset)
        os.ftruncate(fd, len(data))
        os.fsync(fd)  # the journal line may be retired at any moment
    finally:
        os.close(fd)
    return True


def _after_fork() -> None:
    """In a forked child: forget the parent's journals and let go of their descriptors, whose
    locks would otherwise keep a dead parent's journal from being collected."""
    global _journals_lock, _segments_lock
    _journals_lock, _segments_lock = threading.Lock(), threading.Lock()
    for found in _journals.values():
        for fd in found._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        found._fds = []
        found._closed = True
    _journals.clear()
    for fd in list(_flushing):  # another thread's flush, which the child does not have
        with contextlib.suppress(OSError):
            os.close(fd)
    _flushing.clear()
    _segments.clear()


os.register_at_fork(after_in_child=_after_fork)
