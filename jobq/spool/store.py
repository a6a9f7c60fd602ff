"""The spool directory as the rest of jobq sees it: ``SpoolDir``.

On top of the job files (``jobq.spool.jobs``): lookups by id, worker registrations and
heartbeats, the spool's own clock, cancel requests, and the collection of leftovers.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from typing import TYPE_CHECKING

import orjson

from jobq import layout as L
from jobq.errors import InvalidName
from jobq.layout import (
    JobFileName,
    QuarantinedName,
    parse_quarantined,
    parse_running,
    parse_scheduled,
)
from jobq.model import CorruptJob, Job, encode_job
from jobq.spool import files, journal
from jobq.spool.commits import Commits
from jobq.spool.files import DIR_MODE, FILE_MODE, list_names, translated
from jobq.spool.jobs import Claimed
from jobq.spool.publish import Publishing

if TYPE_CHECKING:
    from collections.abc import Callable, Container, Iterator

__all__ = ("SpoolDir",)

#: Seconds a hidden journal segment may exist unlocked: its producer creates, locks and
#: renames it in a moment, so an older one is a dead producer's leftover.
HIDDEN_GRACE = 60.0


class SpoolDir(Publishing, Commits):
    """Low-level, blocking access to one spool directory.

    Args:
        root: the spool directory; created (mode 0700) on first use.
        durable: fsync files and directories so that published jobs and recorded outcomes
            survive power loss.
    """

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

    def find_quarantined(self, job_id: str) -> tuple[str, QuarantinedName] | None:
        """The file of ``job_id`` in ``invalid/`` and what its name tells, or None.

        An outcome record comes first (it is the job's last word), then a job file.
        """
        found = None
        directory = self.path(L.INVALID)
        names = [n for n in list_names(directory) if job_id in n]  # few: sort only those
        for filename in sorted(names):
            if filename.endswith(L.REASON_SUFFIX):
                continue
            try:
                told = parse_quarantined(filename)
            except InvalidName:
                continue
            if told.job_id == job_id:
                if told.state is not None:
                    return os.path.join(directory, filename), told
                found = found or (os.path.join(directory, filename), told)
        return found

    def find_waiting(self, job_id: str) -> tuple[str, Claimed] | None:
        """Find a pending, scheduled, waiting or running job: its state and where, or None."""
        marker = f"-{job_id}-"  # a substring test first: parsing every name costs 40x more
        found = self._unfinished(lambda name: marker in name, {job_id})
        return next(found, None)

    def _unfinished(
        self, may_be: Callable[[str], bool], job_ids: Container[str]
    ) -> Iterator[tuple[str, Claimed]]:
        """The pending, scheduled, waiting and running job files of ``job_ids``: (state,
        where), queue by queue, then worker by worker; ``may_be`` passes the file names worth
        parsing."""
        for queue in self.queues():
            for state, directory, parse in (
                (L.PENDING, self.pending_dir(queue), JobFileName.parse),
                (L.SCHEDULED, self.scheduled_dir(queue), lambda n: parse_scheduled(n)[1]),
                (L.WAITING, self.waiting_dir(queue), JobFileName.parse),
            ):
                for filename in list_names(directory):
                    if not may_be(filename):
                        continue
                    with contextlib.suppress(InvalidName):
                        name = parse(filename)
                        if name.job_id in job_ids:
                            yield state, Claimed(queue, name, os.path.join(directory, filename))
        for worker_id in self.running_workers():
            for held in self.running_jobs(worker_id):
                if held.job_id in job_ids:
                    yield L.RUNNING, held

    def requeue_record(self, record: str, job: Job, name: JobFileName) -> bool:
        """Put a dead job (a failed or cancelled record) back to pending as ``name``.

        The record is first renamed into ``tmp/`` (so of two concurrent retries one wins),
        then a fresh job file is published, then the old record is dropped.

        Returns:
            False if the record was gone (another retry or a purge won).
        """
        hold = self._temp_path(job.id, ".retry")
        with translated("retry a job"):
            if not self.rename(record, hold):
                return False
            try:
                self.ensure_queue(job.queue)
                # A job with dependencies waits for them again (its caller re-checks them).
                home = self.waiting_dir(job.queue) if job.after else self.pending_dir(job.queue)
                self._publish_file(os.path.join(home, name.filename), encode_job(job))
            except BaseException:
                os.rename(hold, record)
                raise
            os.unlink(hold)
        return True

    # -- workers, leases, clock ------------------------------------------------------------

    def register_worker(self, worker_id: str, info: dict[str, object]) -> None:
        """Create the worker's running directory and registration (its first heartbeat).

        The registration is fsynced even when not durable: it is written once per start,
        and one emptied by a power cut no longer says the worker's lease (see ``workers``).
        """
        self.ensure()
        with translated("register the worker"):
            os.makedirs(self.running_dir(worker_id), mode=DIR_MODE, exist_ok=True)
            self._publish_file(self.worker_file(worker_id), orjson.dumps(info), always_sync=True)

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
        """Registered workers: (id, heartbeat mtime on the spool's clock, registration).

        A registration that is not a JSON object (one a power cut emptied) is listed with
        ``{}``: its mtime still tells when the worker was last seen, so it is judged like
        any silent worker, with an estimated lease (see ``jobq.lease.reap_expired``).
        """
        found = []
        for filename in list_names(self.path(L.WORKERS)):
            if not filename.endswith(L.JOB_SUFFIX):
                continue
            path = self.path(L.WORKERS, filename)
            try:
                with open(path, "rb") as f:
                    raw = f.read()
                mtime = os.stat(path).st_mtime
            except OSError:
                continue  # removed meanwhile (deregistered or reaped)
            try:
                info = orjson.loads(raw)
            except orjson.JSONDecodeError:
                info = None
            if not isinstance(info, dict):
                info = {}
            found.append((filename[: -len(L.JOB_SUFFIX)], mtime, info))
        return found

    def now(self) -> float:
        """The spool's own clock: touch a probe file and read its mtime.

        Hosts sharing a spool judge lease ages by this clock, so skewed local clocks agree.
        """
        self.ensure()
        probe = self.path(L.CLOCK_FILE)
        with translated("read the spool clock"):
            try:
                os.utime(probe)
            except FileNotFoundError:
                os.close(os.open(probe, os.O_WRONLY | os.O_CREAT, FILE_MODE))
            return os.stat(probe).st_mtime

    # -- cancel requests -------------------------------------------------------------------

    def request_cancel(self, job_id: str) -> None:
        """Ask the worker running ``job_id`` to cancel it."""
        self.ensure()
        with translated("request a cancel"):
            flags = os.O_WRONLY | os.O_CREAT
            os.close(os.open(self.path(L.CANCEL_REQUESTS, job_id), flags, FILE_MODE))

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

    def collect_journals(self) -> int:
        """Mend the jobs that dead producers' journals name, sync, and remove the journals.

        A segment whose ``flock`` is free belongs to a process that ended without retiring
        it (killed, or its sync failed). A power cut since may have emptied job files it
        names: each such file is written back from its line, the filesystem is synced, and
        only then is the segment removed. A segment with a job not yet settled (see
        ``_mend_named``) stays for the next call. Returns how many segments were removed.
        """
        if not files._syncfs_usable(self.root):
            return 0  # journals are only written where it is: a spool that moved keeps them
        directory = self.path(L.JOURNALS)
        removed = 0
        for filename in list_names(directory, hidden=True):
            path = os.path.join(directory, filename)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its producer lives, and retires it itself
                # A hidden one was never written: its producer died while creating it, or
                # is creating it right now (not locked yet): only an old one is left over.
                if filename.startswith("."):
                    if time.time() - os.fstat(fd).st_mtime < HIDDEN_GRACE:
                        continue
                else:
                    if not self._mend_named(dict(journal.lines(self.read_file(path)))):
                        continue
                    try:
                        files._syncfs(fd)
                    except OSError:
                        continue  # kept until a sync succeeds
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                removed += 1
            finally:
                os.close(fd)
        return removed

    def _mend_named(self, jobs: dict[str, bytes]) -> bool:
        """Write back each of ``jobs`` (id: job file bytes) whose file is empty or torn.

        Returns:
            Whether every job is settled: its job file read whole (mended if it had to be),
            its outcome record readable, or the job found nowhere in two looks in a row (a
            file that moved between the listings of one look is in place for the next).
        """
        unsettled, absent_before = set(jobs), set[str]()
        for _ in range(3):
            found = [(h.job_id, h.path) for _, h in self._unfinished(lambda _: True, unsettled)]
            absent = unsettled - {job_id for job_id, _ in found}
            for job_id, path in found:
                try:
                    self._rewrite_named(path, job_id, jobs[job_id])
                except FileNotFoundError:
                    continue  # moved since it was listed: the next look finds it
                except (OSError, CorruptJob):
                    return False  # a mend failed: the line must stay
                unsettled.discard(job_id)
            for job_id in absent:
                record = self.find_finished(job_id)
                if record is not None and self._readable_record(record, job_id):
                    unsettled.discard(job_id)
                elif record is None and job_id in absent_before:
                    unsettled.discard(job_id)  # finished and purged, or quarantined
            if not unsettled:
                return True
            absent_before = absent
        return False

    def _rewrite_named(self, path: str, job_id: str, line: bytes) -> None:
        """Mend the job file ``path`` if it must; if it holds just the line's bytes, write them
        again all the same. A writeback error its producer met (and ``syncfs`` reports once)
        may have left the page cache whole and the disk not: written again, the collector's
        own sync writes them or fails, and the line stays until one succeeds.
        """
        if self.read_file(path) != line:
            self.read_job(path, job_id)  # mends it if it is empty, torn or not its job
        elif not journal.mend_file(path, line):
            raise FileNotFoundError(errno.ENOENT, "moved meanwhile", path)

    def _readable_record(self, path: str, job_id: str) -> bool:
        """Whether the record (or bare job file) at ``path`` reads, after completing a commit
        that a power cut interrupted with the job file there emptied."""
        queue = os.path.basename(os.path.dirname(path))
        for _ in range(2):
            try:
                orjson.loads(self.read_file(path))
            except orjson.JSONDecodeError:
                if not self.complete_commit_of(queue, job_id):
                    return False
                continue
            except FileNotFoundError:
                return False
            return True
        return False

    def key_age(self, job_id: str) -> float | None:
        """Seconds since the deduplication key of ``job_id`` was taken, None if it is free."""
        try:
            return self.now() - os.stat(self.path(L.KEYS, job_id)).st_mtime
        except FileNotFoundError:
            return None
