"""Job files in the spool: layout, set-up, reading, claim, requeue and promotion.

Every state change of a job is one ``rename`` (see ``jobq.spool.files``); the job's mutable
state lives in its file name (see ``jobq.layout``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobq import layout as L
from jobq.errors import InvalidName
from jobq.layout import JobFileName, parse_scheduled
from jobq.model import CorruptJob, Job, decode_job
from jobq.names import check_queue
from jobq.spool import journal
from jobq.spool.files import DIR_MODE, FileOps, list_names, translated
from jobq.spool.marker import check_marker, write_marker

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ("Claimed", "Finish", "JobFiles")


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
    """An outcome to commit: job file ``src`` gives way to ``record`` (``STATE/QUEUE/ID.json``)."""

    src: str
    queue: str
    job_id: str
    state: str
    record: bytes


class JobFiles(FileOps):
    """Job files of one spool directory: where they live and how they move.

    Args:
        root: the spool directory; created (mode 0700) on first use.
        durable: fsync files and directories so that published jobs and recorded outcomes
            survive power loss.
    """

    def __init__(self, root: str | os.PathLike[str], *, durable: bool = True) -> None:
        super().__init__(root, durable=durable)
        self._ready = False
        self._queues: set[str] = set()

    # -- paths -----------------------------------------------------------------------------

    def pending_dir(self, queue: str) -> str:
        """Where runnable jobs of ``queue`` wait."""
        return self.path(L.QUEUES, queue, L.PENDING)

    def scheduled_dir(self, queue: str) -> str:
        """Where delayed jobs and retries of ``queue`` wait for their due time."""
        return self.path(L.QUEUES, queue, L.SCHEDULED)

    def waiting_dir(self, queue: str) -> str:
        """Where jobs of ``queue`` wait for their ``after=`` dependencies."""
        return self.path(L.QUEUES, queue, L.WAITING)

    def running_dir(self, worker_id: str) -> str:
        """Where ``worker_id`` keeps the jobs it claimed."""
        return self.path(L.RUNNING, worker_id)

    def finished_path(self, state: str, queue: str, job_id: str) -> str:
        """The outcome record of a finished job."""
        return self.path(state, queue, job_id + L.JOB_SUFFIX)

    def find_finished(self, job_id: str, queues: Iterable[str] | None = None) -> str | None:
        """Path of the outcome record of ``job_id``, or None if it has not finished."""
        for queue in self.queues() if queues is None else queues:
            for state in L.FINISHED_STATES:
                path = self.finished_path(state, queue, job_id)
                if os.path.exists(path):
                    return path
        return None

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
            ConfigurationError: if the directory holds a spool of another format version,
                or a marker that is neither empty nor ``{"format": N}``.
            SpoolError: if the directories cannot be created or the marker cannot be read.
        """
        if self._ready:
            return
        marker = self.path(L.FORMAT_FILE)
        with translated(f"create the spool at {self.root}"):
            fresh = not os.path.isdir(self.root)
            os.makedirs(self.root, mode=DIR_MODE, exist_ok=True)
            if fresh:
                os.chmod(self.root, DIR_MODE)
            for sub in (L.TMP, L.QUEUES, L.RUNNING, L.LOGS, L.WORKERS, L.INVALID, L.KEYS):
                os.makedirs(self.path(sub), mode=DIR_MODE, exist_ok=True)
            for state in (*L.FINISHED_STATES, L.CANCEL_REQUESTS):
                os.makedirs(self.path(state), mode=DIR_MODE, exist_ok=True)
            if not os.path.exists(marker):
                write_marker(self)
        if not check_marker(self):
            # Repair is best effort: a read-only spool is still read as what it is.
            with contextlib.suppress(OSError):
                write_marker(self)
        self._ready = True

    def check_format(self) -> bool:
        """Check the format marker of an existing spool, without writing anything.

        Returns:
            False if the marker is empty (a power cut's leftover, taken as this format).

        Raises:
            ConfigurationError: if the marker names another format or is not a marker.
            SpoolError: if it cannot be read.
        """
        return check_marker(self)

    def queue_ready(self, queue: str) -> bool:
        """Whether ``queue``'s directories are known to exist (a publish creates none)."""
        return queue in self._queues

    def ensure_queue(self, queue: str) -> None:
        """Create the directories of ``queue`` if missing."""
        if queue in self._queues:
            return
        self.ensure()
        check_queue(queue)
        with translated(f"create queue {queue!r}"):
            # queues/Q first: makedirs gives intermediate directories the umask's mode.
            for d in (
                self.path(L.QUEUES, queue),
                self.pending_dir(queue),
                self.scheduled_dir(queue),
                self.waiting_dir(queue),
                *(self.path(s, queue) for s in L.FINISHED_STATES),
            ):
                os.makedirs(d, mode=DIR_MODE, exist_ok=True)
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

    def write_file(self, dest: str, data: bytes) -> None:
        """Atomically replace ``dest`` with ``data`` (temp file, fsync, rename, fsync dir)."""
        self.ensure()
        with translated(f"write {dest}"):
            self._publish_file(dest, data)

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
        dest = f"{self.running_dir(worker_id)}/{name.running_name(queue)}"
        with translated("claim a job"):
            if not self.rename(f"{self.pending_dir(queue)}/{filename}", dest):
                return None
        return Claimed(queue, name, dest)

    def requeue(self, src: str, queue: str, name: JobFileName, due_us: int | None = None) -> bool:
        """Move a claimed (or scheduled) job back to pending, or to scheduled if ``due_us``.

        Returns:
            False if ``src`` was gone: another worker or reaper moved it first.
        """
        self.ensure_queue(queue)
        if due_us is None:
            dest = f"{self.pending_dir(queue)}/{name.filename}"
        else:
            dest = f"{self.scheduled_dir(queue)}/{name.scheduled_name(due_us)}"
        with translated("requeue a job"):
            # The destination's name is the one a reaper would use too: a fenced worker must
            # not take the reaper's move for its own.
            if not self.move(src, dest):
                return False
            self.fsync_dir(os.path.dirname(dest))
        return True

    def promote_due(self, queue: str, now_us: int) -> int:
        """Move the scheduled jobs of ``queue`` that are due into pending; how many moved."""
        return self.promote_due_next(queue, now_us)[0]

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
            with translated("promote a scheduled job"):
                if self.rename(src, f"{self.pending_dir(queue)}/{name.filename}"):
                    moved += 1
        if moved:
            with translated("promote a scheduled job"):
                self.fsync_dir(self.pending_dir(queue))
        return moved, next_due

    def read_job(self, path: str, job_id: str) -> Job:
        """Read and decode the job file ``path``, mended from a journal if a power cut emptied
        or tore it (see ``jobq.spool.journal``).

        Raises:
            CorruptJob: if it is not a job file and no journal holds the job.
            OSError: if it cannot be read (``FileNotFoundError`` if it is gone).
        """
        try:
            job = decode_job(self.read_file(path))
            if job.id != job_id:
                raise CorruptJob(f"its id does not match its name (it holds job {job.id})")
            return job
        except CorruptJob:
            data = journal.lookup(self.root, job_id)
            if data is None:
                raise
            if not journal.mend_file(path, data):
                raise FileNotFoundError(errno.ENOENT, "job file gone", path) from None
            return decode_job(data)

    def quarantine(self, src: str, reason: str, *, name: str | None = None) -> str | None:
        """Move a bad file byte-for-byte into ``invalid/`` with a ``.reason`` file beside it.

        Args:
            src: the file.
            reason: why, for the operator (``jobq jobs --state invalid``).
            name: its name in ``invalid/`` (default: the name it has), which must tell the
                job it belonged to (see ``jobq.layout.parse_quarantined``).

        Returns:
            The new path, or None if the file was already gone.
        """
        self.ensure()
        base = name or os.path.basename(src)
        dest = self.path(L.INVALID, base)
        with translated("quarantine a bad job file"):
            if os.path.exists(dest):
                dest = self.path(L.INVALID, f"{base}.{secrets.token_hex(3)}")
            if not self.rename(src, dest):
                return None
            with contextlib.suppress(FileExistsError):
                self._write_new(dest + L.REASON_SUFFIX, (reason.rstrip("\n") + "\n").encode())
            self.fsync_dir(self.path(L.INVALID))
        return dest
