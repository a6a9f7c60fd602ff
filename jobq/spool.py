"""The spool directory: layout, atomic publish, claim, commit and requeue.

This is the only module that renames or fsyncs. Every state change is one ``rename``, which
doubles as a compare-and-swap: of several renames of one source exactly one succeeds and the
rest get ENOENT. Publishing follows Maildir: write a private temp file (O_EXCL), fsync it,
rename it into a scanned directory, fsync that directory. OSErrors leave this module as
``SpoolError``; ENOENT on a rename is not an error but a lost race, reported as ``False``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import platform
import secrets
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from jobq import layout as L
from jobq.errors import ConfigurationError, InvalidName, SpoolError
from jobq.layout import JobFileName, parse_running, parse_scheduled
from jobq.model import Job, encode_job
from jobq.names import check_job_id, check_queue
from jobq.waiting import local_filesystem

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

__all__ = ("Claimed", "Finish", "SpoolDir", "list_names")

_DIR_MODE = 0o700
_FILE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job file this worker owns in ``running/WORKER/``."""

    queue: str
    name: JobFileName
    path: str

    @property
    def job_id(self) -> str:
        """The claimed job's id."""
        return self.name.job_id


@dataclass(frozen=True, slots=True)
class Finish:
    """One outcome to commit: move ``src`` to ``STATE/QUEUE/ID.json`` and record ``record``."""

    src: str
    queue: str
    job_id: str
    state: str
    record: bytes


def list_names(directory: str) -> list[str]:
    """File names in ``directory`` (no stat), skipping hidden ones; [] if it does not exist."""
    try:
        return [n for n in os.listdir(directory) if not n.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []


#: Batches of at least this many new files share one syncfs (measured: from 2 files on it wins).
_SYNCFS_MIN = 2


@functools.lru_cache(maxsize=16)
def _syncfs_usable(root: str) -> bool:
    """Whether one ``syncfs(2)`` may stand in for the fsyncs of a batch of files under ``root``.

    Only on Linux >= 5.8, where syncfs reports writeback errors (before, it returned 0 even
    when data was lost), and only on local filesystems, whose ``sync_fs`` flushes the device:
    a network or FUSE filesystem's syncfs need not reach the server, while fsync does. The
    price: it also flushes other dirty data of that filesystem, which a busy neighbour makes
    slower (but never less safe).
    """
    if not sys.platform.startswith("linux") or _libc_syncfs() is None:
        return False
    try:
        major, minor = (int(x) for x in platform.release().split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8) and local_filesystem(root)


@functools.lru_cache(maxsize=1)
def _libc_syncfs() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None


def _syncfs(fd: int) -> None:
    """Flush the filesystem that ``fd`` lives on; raises OSError as fsync would."""
    if _libc_syncfs()(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@contextlib.contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except SpoolError:
        raise
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        raise SpoolError(exc.errno or 0, f"cannot {action}: {reason}{where}") from exc


class SpoolDir:
    """Low-level, blocking access to one spool directory.

    Args:
        root: the spool directory; created (mode 0700) on first use.
        durable: fsync files and directories so that published jobs and recorded outcomes
            survive power loss.
    """

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.durable = durable
        self._ready = False
        self._queues: set[str] = set()

    # -- paths -----------------------------------------------------------------------------

    def path(self, *parts: str) -> str:
        """A path inside the spool."""
        return os.path.join(self.root, *parts)

    def pending_dir(self, queue: str) -> str:
        """Where runnable jobs of ``queue`` wait."""
        return self.path(L.QUEUES, queue, L.PENDING)

    def scheduled_dir(self, queue: str) -> str:
        """Where delayed jobs and retries of ``queue`` wait for their due time."""
        return self.path(L.QUEUES, queue, L.SCHEDULED)

    def running_dir(self, worker_id: str) -> str:
        """Where ``worker_id`` keeps the jobs it claimed."""
        return self.path(L.RUNNING, worker_id)

    def finished_path(self, state: str, queue: str, job_id: str) -> str:
        """The outcome record of a finished job."""
        return self.path(state, queue, job_id + L.JOB_SUFFIX)

    def log_path(self, job_id: str) -> str:
        """The captured log of a job."""
        return self.path(L.LOGS, job_id + ".log")

    def progress_path(self, job_id: str) -> str:
        """The last progress a running job reported (JSON)."""
        return self.path(L.LOGS, job_id + ".progress")

    def worker_file(self, worker_id: str) -> str:
        """A worker's registration; its mtime is the worker's heartbeat."""
        return self.path(L.WORKERS, worker_id + L.JOB_SUFFIX)

    # -- set-up ----------------------------------------------------------------------------

    def ensure(self) -> None:
        """Create the spool layout (mode 0700) and its format marker if missing.

        Raises:
            ConfigurationError: if the directory holds a spool of another format version.
            SpoolError: if the directories cannot be created.
        """
        if self._ready:
            return
        marker = self.path(L.FORMAT_FILE)
        with _translated(f"create the spool at {self.root}"):
            fresh = not os.path.isdir(self.root)
            os.makedirs(self.root, mode=_DIR_MODE, exist_ok=True)
            if fresh:
                os.chmod(self.root, _DIR_MODE)
            for sub in (L.TMP, L.QUEUES, L.RUNNING, L.LOGS, L.WORKERS, L.INVALID, L.KEYS):
                os.makedirs(self.path(sub), mode=_DIR_MODE, exist_ok=True)
            for state in (*L.FINISHED_STATES, L.CANCEL_REQUESTS):
                os.makedirs(self.path(state), mode=_DIR_MODE, exist_ok=True)
            if not os.path.exists(marker):
                self._publish_file(marker, orjson.dumps({"format": L.FORMAT_VERSION}))
        try:
            with open(marker, "rb") as f:
                version = orjson.loads(f.read()).get("format")
        except (OSError, ValueError, AttributeError):
            version = None
        if version != L.FORMAT_VERSION:
            raise ConfigurationError(
                f"{self.root} holds a spool of format {version!r}; this jobq reads format "
                f"{L.FORMAT_VERSION} (use another --spool or upgrade jobq)"
            )
        self._ready = True

    def ensure_queue(self, queue: str) -> None:
        """Create the directories of ``queue`` if missing."""
        if queue in self._queues:
            return
        self.ensure()
        check_queue(queue)
        with _translated(f"create queue {queue!r}"):
            # queues/Q first: makedirs gives intermediate directories the umask's mode.
            for d in (
                self.path(L.QUEUES, queue),
                self.pending_dir(queue),
                self.scheduled_dir(queue),
                *(self.path(s, queue) for s in L.FINISHED_STATES),
            ):
                os.makedirs(d, mode=_DIR_MODE, exist_ok=True)
        self._queues.add(queue)

    def queues(self) -> list[str]:
        """Names of the queues present in the spool, sorted."""
        found = []
        for name in list_names(self.path(L.QUEUES)):
            try:
                found.append(check_queue(name))
            except InvalidName:
                continue
        return sorted(found)

    # -- primitives ------------------------------------------------------------------------

    def fsync_dir(self, directory: str) -> None:
        """Make the entries of ``directory`` durable (a no-op when not durable)."""
        if not self.durable:
            return
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _write_new(self, path: str, data: bytes) -> None:
        """Create ``path`` exclusively, write ``data`` whole, fsync if durable, check close."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.durable:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        os.close(fd)

    def write_new_many(self, items: Sequence[tuple[str, bytes]]) -> list[int]:
        """Create each ``(path, data)`` exclusively and make them all durable together.

        A durable batch on a local filesystem shares one ``syncfs(2)`` instead of one fsync
        per file (ext4 here: 8 files 1.3 ms with fsyncs, 0.3 ms with one syncfs); see
        ``_syncfs_usable`` for where that is safe. Elsewhere each file is fsynced. If anything
        fails, the files written so far are removed before the error propagates.

        Returns:
            Each file's inode number (lost-reply checks of later renames compare it).
        """
        shared = self.durable and len(items) >= _SYNCFS_MIN and _syncfs_usable(self.root)
        # Opened before writing: syncfs reports the writeback errors seen since this open.
        anchor = os.open(os.path.dirname(items[0][0]), os.O_RDONLY) if shared else -1
        written: list[str] = []
        inodes: list[int] = []
        try:
            for path, data in items:
                inodes.append(self._write_new_file(path, data, sync=self.durable and not shared))
                written.append(path)
            if shared:
                _syncfs(anchor)
        except BaseException:
            for path in written:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise
        finally:
            if anchor >= 0:
                os.close(anchor)
        return inodes

    def _write_new_file(self, path: str, data: bytes, *, sync: bool) -> int:
        """``_write_new`` with the fsync optional; returns the new file's inode number."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
            ino = os.fstat(fd).st_ino
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        os.close(fd)
        return ino

    def read_file(self, path: str) -> bytes:
        """A whole (small, immutable) file in four system calls, not the seven of ``open()``."""
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            data = os.read(fd, size + 1)  # one byte more: a short read means the end
            if len(data) <= size:
                return data
            chunks = [data]
            while chunk := os.read(fd, 65536):  # it grew meanwhile: read to the end
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _temp_path(self, stem: str, suffix: str) -> str:
        return self.path(L.TMP, f"{stem}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")

    def _publish_file(self, dest: str, data: bytes) -> None:
        tmp = self._temp_path(os.path.basename(dest), ".tmp")
        self._write_new(tmp, data)
        try:
            os.rename(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self.fsync_dir(os.path.dirname(dest))

    def write_file(self, dest: str, data: bytes) -> None:
        """Atomically replace ``dest`` with ``data`` (temp file, fsync, rename, fsync dir)."""
        self.ensure()
        with _translated(f"write {dest}"):
            self._publish_file(dest, data)

    def rename(self, src: str, dst: str, *, src_ino: int | None = None) -> bool:
        """Rename ``src`` to ``dst``; False if ``src`` was gone (a lost race).

        On a network filesystem a rename can report ENOENT although it succeeded (its reply
        was lost and the retry found no source). Like Postfix's ``sane_rename`` we then look at
        the destination: when ``src_ino`` is given, the destination must be that very file;
        otherwise (destinations private to the caller) its existence is enough.
        """
        try:
            os.rename(src, dst)
        except FileNotFoundError:
            try:
                found = os.stat(dst).st_ino
            except FileNotFoundError:
                return False
            return os.path.exists(src) is False and (src_ino is None or found == src_ino)
        return True

    # -- publish ---------------------------------------------------------------------------

    def publish(self, jobs: Sequence[Job], due_us: int | None = None) -> list[bool]:
        """Publish ``jobs`` as one batch, with one fsync per directory.

        Each job file is written and fsynced in ``tmp/`` first, so a failure while writing
        publishes nothing. Jobs whose deduplication key is taken are skipped.

        Args:
            jobs: the jobs to publish.
            due_us: publish into ``scheduled/`` to run at this time (µs since the epoch).

        Returns:
            For each job, True if it was published, False if its key was already taken.

        Raises:
            SerializationError: if a job's arguments are not JSON (nothing is published).
            SpoolError: if the filesystem refuses (nothing is published).
        """
        encoded = [(job, encode_job(job)) for job in jobs]
        for job in jobs:
            self.ensure_queue(job.queue)
        staged: list[tuple[str, str]] = []
        writes: list[tuple[str, bytes]] = []
        claimed_keys: list[str] = []
        published: list[bool] = []
        renamed = 0
        try:
            with _translated("enqueue"):
                for job, data in encoded:
                    if job.key is not None and not self._take_key(job.id, claimed_keys):
                        published.append(False)
                        continue
                    tmp = self._temp_path(job.id, ".job")
                    writes.append((tmp, data))
                    staged.append((tmp, self._publish_target(job, due_us)))
                    published.append(True)
                if writes:
                    self.write_new_many(writes)  # one syncfs for the batch where that is safe
                if claimed_keys:
                    self.fsync_dir(self.path(L.KEYS))
                for tmp, dest in staged:
                    os.rename(tmp, dest)
                    renamed += 1
                for directory in sorted({os.path.dirname(dest) for _, dest in staged}):
                    self.fsync_dir(directory)
        except BaseException:
            for tmp, _ in staged[renamed:]:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            # Renamed but not known durable (the directory fsync failed): the caller is told
            # the enqueue failed, so take the jobs back unless a worker already claimed them.
            for _, dest in staged[:renamed]:
                with contextlib.suppress(OSError):
                    os.unlink(dest)
            for job_id in claimed_keys:
                with contextlib.suppress(OSError):
                    os.unlink(self.path(L.KEYS, job_id))
            raise
        return published

    def _publish_target(self, job: Job, due_us: int | None) -> str:
        name = job.file_name
        if due_us is None:
            return os.path.join(self.pending_dir(job.queue), name.filename)
        return os.path.join(self.scheduled_dir(job.queue), name.scheduled_name(due_us))

    def _take_key(self, job_id: str, taken: list[str]) -> bool:
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            os.close(os.open(self.path(L.KEYS, job_id), flags, _FILE_MODE))
        except FileExistsError:
            return False
        taken.append(job_id)
        return True

    def key_age(self, job_id: str) -> float | None:
        """Seconds since the deduplication key of ``job_id`` was taken, None if it is free."""
        try:
            return self.now() - os.stat(self.path(L.KEYS, job_id)).st_mtime
        except FileNotFoundError:
            return None

    def release_key(self, job_id: str) -> None:
        """Forget a deduplication key so that the same key can be enqueued again."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(L.KEYS, job_id))

    # -- claim, commit, requeue ------------------------------------------------------------

    def scheduled_names(self, queue: str) -> list[str]:
        """Scheduled job file names of ``queue``, unsorted."""
        return list_names(self.scheduled_dir(queue))

    def pending_names(self, queue: str) -> list[str]:
        """Pending job file names of ``queue``, unsorted."""
        return list_names(self.pending_dir(queue))

    def claim(self, worker_id: str, queue: str, filename: str) -> Claimed | None:
        """Claim a pending job for ``worker_id`` by renaming it into the worker's directory.

        Returns:
            The claim, or None if another worker won the race for it.

        Raises:
            InvalidName: if ``filename`` is not a job file name (quarantine it).
        """
        name = JobFileName.parse(filename).started()
        dest = os.path.join(self.running_dir(worker_id), name.running_name(queue))
        with _translated("claim a job"):
            if not self.rename(os.path.join(self.pending_dir(queue), filename), dest):
                return None
        return Claimed(queue, name, dest)

    def commit(self, finishes: Sequence[Finish]) -> list[bool]:
        """Record outcomes: one group commit with one fsync per directory.

        For each outcome the record is written and fsynced in ``tmp/``; then the job file is
        renamed to ``STATE/QUEUE/ID.json`` (the commit point and the fence) and the record
        replaces it. If the first rename finds the source gone, the attempt was fenced (a
        reaper took the job back) and its outcome is discarded.

        Returns:
            For each outcome, True if it was recorded, False if it was fenced.
        """
        results: list[bool] = []
        with _translated("record a job outcome"):
            staged = []
            try:
                temps = [
                    self._temp_path(f"{fin.state}@{fin.queue}@{fin.job_id}", ".rec")
                    for fin in finishes
                ]
                # One syncfs for the batch where that is safe; it removes its files on failure.
                writes = [(t, f.record) for t, f in zip(temps, finishes, strict=True)]
                inodes = self.write_new_many(writes)
                staged = list(zip(finishes, temps, inodes, strict=True))
            except BaseException:  # e.g. ENOSPC: nothing is committed, leave nothing behind
                for _, tmp, _ in staged:
                    self.remove(tmp)
                raise
            touched: set[str] = set()
            for fin, tmp, tmp_ino in staged:
                self.ensure_queue(fin.queue)
                dest = self.finished_path(fin.state, fin.queue, fin.job_id)
                try:
                    # Records are not private to us: a lost-reply check must match the inode.
                    ino: int | None = os.stat(fin.src).st_ino
                except FileNotFoundError:
                    ino = None
                if ino is None or not self.rename(fin.src, dest, src_ino=ino):
                    self.remove(tmp)
                    results.append(False)
                    continue
                if not self.rename(tmp, dest, src_ino=tmp_ino):
                    # Our staged record was taken by a collector that thought us dead (we were
                    # frozen between its writing and this rename): the job is ours, record
                    # it again.
                    self._publish_file(dest, fin.record)
                touched.add(os.path.dirname(dest))
                results.append(True)
            for directory in sorted(touched):
                self.fsync_dir(directory)
        return results

    def requeue(self, src: str, queue: str, name: JobFileName, due_us: int | None = None) -> bool:
        """Move a claimed (or scheduled) job back to pending, or to scheduled if ``due_us``.

        Returns:
            False if ``src`` was gone: another worker or reaper moved it first.
        """
        self.ensure_queue(queue)
        if due_us is None:
            dest = os.path.join(self.pending_dir(queue), name.filename)
        else:
            dest = os.path.join(self.scheduled_dir(queue), name.scheduled_name(due_us))
        with _translated("requeue a job"):
            # The destination's name is the one a reaper would use too: a lost-reply check
            # must match the inode, or a fenced worker would take the reaper's move for its own.
            try:
                ino = os.stat(src).st_ino
            except FileNotFoundError:
                return False
            if not self.rename(src, dest, src_ino=ino):
                return False
            self.fsync_dir(os.path.dirname(dest))
        return True

    def promote_due(self, queue: str, now_us: int) -> int:
        """Move the scheduled jobs of ``queue`` that are due into pending; how many moved."""
        moved = 0
        directory = self.scheduled_dir(queue)
        for filename in sorted(list_names(directory)):
            try:
                due, name = parse_scheduled(filename)
            except InvalidName:
                self.quarantine(os.path.join(directory, filename), "not a scheduled job name")
                continue
            if due > now_us:
                break
            src = os.path.join(directory, filename)
            with _translated("promote a scheduled job"):
                if self.rename(src, os.path.join(self.pending_dir(queue), name.filename)):
                    moved += 1
        if moved:
            with _translated("promote a scheduled job"):
                self.fsync_dir(self.pending_dir(queue))
        return moved

    def promote_due_next(self, queue: str, now_us: int) -> tuple[int, int | None]:
        """``promote_due`` that also tells when the next scheduled job is due, from one listing.

        Returns:
            How many jobs moved, and the due time (µs) of the earliest job left in
            ``scheduled/`` (None if there is none), so an idle worker can sleep until then.
        """
        moved = 0
        next_due: int | None = None
        directory = self.scheduled_dir(queue)
        for filename in sorted(list_names(directory)):
            try:
                due, name = parse_scheduled(filename)
            except InvalidName:
                self.quarantine(os.path.join(directory, filename), "not a scheduled job name")
                continue
            if due > now_us:
                next_due = due
                break
            src = os.path.join(directory, filename)
            with _translated("promote a scheduled job"):
                if self.rename(src, os.path.join(self.pending_dir(queue), name.filename)):
                    moved += 1
        if moved:
            with _translated("promote a scheduled job"):
                self.fsync_dir(self.pending_dir(queue))
        return moved, next_due

    def quarantine(self, src: str, reason: str) -> str | None:
        """Move a bad file byte-for-byte into ``invalid/`` with a ``.reason`` file beside it.

        Returns:
            The new path, or None if the file was already gone.
        """
        self.ensure()
        base = os.path.basename(src)
        dest = self.path(L.INVALID, base)
        with _translated("quarantine a bad job file"):
            if os.path.exists(dest):
                dest = self.path(L.INVALID, f"{base}.{secrets.token_hex(3)}")
            if not self.rename(src, dest):
                return None
            with contextlib.suppress(FileExistsError):
                self._write_new(dest + ".reason", (reason.rstrip("\n") + "\n").encode())
            self.fsync_dir(self.path(L.INVALID))
        return dest

    # -- lookups ---------------------------------------------------------------------------

    def running_jobs(self, worker_id: str) -> list[Claimed]:
        """The jobs held in ``running/worker_id/``."""
        directory = self.running_dir(worker_id)
        held = []
        for filename in list_names(directory):
            try:
                queue, name = parse_running(filename)
            except InvalidName:
                continue
            held.append(Claimed(queue, name, os.path.join(directory, filename)))
        return held

    def running_workers(self) -> list[str]:
        """Ids of the workers that have a running directory."""
        return list_names(self.path(L.RUNNING))

    def find_finished(self, job_id: str, queues: Iterable[str] | None = None) -> str | None:
        """Path of the outcome record of ``job_id``, or None if it has not finished."""
        for queue in self.queues() if queues is None else queues:
            for state in L.FINISHED_STATES:
                path = self.finished_path(state, queue, job_id)
                if os.path.exists(path):
                    return path
        return None

    def find_waiting(self, job_id: str) -> tuple[str, Claimed] | None:
        """Find a pending, scheduled or running job: its state and where it is, or None."""
        marker = f"-{job_id}-"
        for queue in self.queues():
            for filename in list_names(self.pending_dir(queue)):
                if marker in filename:
                    path = os.path.join(self.pending_dir(queue), filename)
                    return L.PENDING, Claimed(queue, JobFileName.parse(filename), path)
            for filename in list_names(self.scheduled_dir(queue)):
                if marker in filename:
                    path = os.path.join(self.scheduled_dir(queue), filename)
                    return L.SCHEDULED, Claimed(queue, parse_scheduled(filename)[1], path)
        for worker_id in self.running_workers():
            for held in self.running_jobs(worker_id):
                if held.job_id == job_id:
                    return L.RUNNING, held
        return None

    def requeue_record(self, record: str, job: Job, name: JobFileName) -> bool:
        """Put a dead job (a failed or cancelled record) back to pending as ``name``.

        The record is first renamed into ``tmp/`` (so of two concurrent retries one wins),
        then a fresh job file is published, then the old record is dropped.

        Returns:
            False if the record was gone (another retry or a purge won).
        """
        hold = self._temp_path(job.id, ".retry")
        with _translated("retry a job"):
            if not self.rename(record, hold):
                return False
            try:
                self.ensure_queue(job.queue)
                self._publish_file(
                    os.path.join(self.pending_dir(job.queue), name.filename), encode_job(job)
                )
            except BaseException:
                os.rename(hold, record)
                raise
            os.unlink(hold)
        return True

    # -- workers, leases, clock ------------------------------------------------------------

    def register_worker(self, worker_id: str, info: dict[str, object]) -> None:
        """Create the worker's running directory and registration (its first heartbeat)."""
        self.ensure()
        with _translated("register the worker"):
            os.makedirs(self.running_dir(worker_id), mode=_DIR_MODE, exist_ok=True)
            self._publish_file(self.worker_file(worker_id), orjson.dumps(info))

    def heartbeat(self, worker_id: str) -> bool:
        """Renew the worker's lease; False if its registration is gone (it was reaped)."""
        try:
            os.utime(self.worker_file(worker_id))
        except FileNotFoundError:
            return False
        return True

    def deregister_worker(self, worker_id: str) -> None:
        """Remove an idle worker's registration and its (empty) running directory."""
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(self.running_dir(worker_id))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.worker_file(worker_id))

    def workers(self) -> list[tuple[str, float, dict[str, object]]]:
        """Registered workers: (id, heartbeat mtime on the spool's clock, registration)."""
        found = []
        for filename in list_names(self.path(L.WORKERS)):
            if not filename.endswith(L.JOB_SUFFIX):
                continue
            path = self.path(L.WORKERS, filename)
            try:
                with open(path, "rb") as f:
                    info = orjson.loads(f.read())
                mtime = os.stat(path).st_mtime
            except (OSError, ValueError):
                continue
            found.append((filename[: -len(L.JOB_SUFFIX)], mtime, info))
        return found

    def now(self) -> float:
        """The spool's own clock: touch a probe file and read its mtime.

        Hosts sharing a spool judge lease ages by this clock, so skewed local clocks agree.
        """
        self.ensure()
        probe = self.path(L.CLOCK_FILE)
        with _translated("read the spool clock"):
            try:
                os.utime(probe)
            except FileNotFoundError:
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, _FILE_MODE))
            return os.stat(probe).st_mtime

    # -- cancel requests -------------------------------------------------------------------

    def request_cancel(self, job_id: str) -> None:
        """Ask the worker running ``job_id`` to cancel it."""
        self.ensure()
        with _translated("request a cancel"):
            flags = os.O_WRONLY | os.O_CREAT
            os.close(os.open(self.path(L.CANCEL_REQUESTS, job_id), flags, _FILE_MODE))

    def cancel_requests(self) -> set[str]:
        """Ids of jobs whose cancellation was requested."""
        return set(list_names(self.path(L.CANCEL_REQUESTS)))

    def collect_cancel_requests(self) -> int:
        """Drop cancel requests of jobs that finished before a worker saw them; how many."""
        dropped = 0
        for job_id in self.cancel_requests():
            if self.find_finished(job_id) is not None:
                self.clear_cancel(job_id)
                dropped += 1
        return dropped

    def clear_cancel(self, job_id: str) -> None:
        """Forget a served cancel request."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(L.CANCEL_REQUESTS, job_id))

    # -- temp files ------------------------------------------------------------------------

    def collect_tmp(self, max_age: float) -> int:
        """Clean ``tmp/`` of files older than ``max_age`` seconds (by the spool's clock).

        Half-written job files of dead producers are deleted (they were never published). An
        outcome record whose commit stopped between its two renames is completed; a retry
        that stopped halfway is moved to ``invalid/`` rather than lost. Returns how many
        files were handled.
        """
        now = self.now()
        handled = 0
        directory = self.path(L.TMP)
        for filename in list_names(directory):
            path = os.path.join(directory, filename)
            try:
                if now - os.stat(path).st_mtime <= max_age:
                    continue
            except FileNotFoundError:
                continue
            if filename.endswith(".rec"):
                self._complete_commit(path, filename)
            elif filename.endswith(".retry"):
                self.quarantine(path, "a `jobq retry` stopped halfway: requeue this job by hand")
            else:
                self.remove(path)
            handled += 1
        return handled

    def complete_commits(self, pid: int) -> int:
        """Finish the commits that process ``pid`` left between their two renames.

        Called by the reaper for a dead worker, so that its last recorded outcomes are complete
        at once rather than after ``collect_tmp``'s hour. Safe even if another host's live
        process has the same pid: ``commit`` records its outcome again if its staged record
        was taken. Returns how many staged records were handled.
        """
        handled = 0
        marker = f".{pid}."
        directory = self.path(L.TMP)
        for filename in list_names(directory):
            if filename.endswith(".rec") and marker in filename:
                self._complete_commit(os.path.join(directory, filename), filename)
                handled += 1
        return handled

    def _complete_commit(self, path: str, filename: str) -> None:
        """Move a staged record over its bare destination (commit point passed), else drop it.

        A destination that holds only the job (no ``state``) was renamed there by the commit
        that staged this record: the outcome is decided and only its contents are missing.
        With no destination the commit never reached its commit point: the job is still in
        ``running/`` and the reaper requeues it.
        """
        state, _, rest = filename.partition("@")
        queue, _, rest = rest.partition("@")
        try:
            if state not in L.FINISHED_STATES:
                raise InvalidName(f"not a state: {state!r}")
            dest = self.finished_path(state, check_queue(queue), check_job_id(rest.split(".")[0]))
            with open(dest, "rb") as f:
                current = orjson.loads(f.read())
            bare = isinstance(current, dict) and "state" not in current
        except (InvalidName, OSError, ValueError):
            bare = False
        if not bare:
            self.remove(path)
            return
        with _translated("complete an interrupted commit"):
            if self.rename(path, dest):
                self.fsync_dir(os.path.dirname(dest))

    # -- removal ---------------------------------------------------------------------------

    def remove(self, path: str) -> bool:
        """Delete a record or stale temp file; False if it was already gone."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.EPERM):
                return False
            raise SpoolError(exc.errno or 0, f"cannot remove {path}: {exc.strerror}") from exc
        return True
