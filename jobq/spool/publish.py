"""Publishing jobs: new job files into their queues, durable by fsyncs or a journal.

See docs/spool-format.md for the publish protocol, and ``jobq.spool.journal`` for the one
flush a durable enqueue costs on filesystems that keep metadata in order.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from jobq import layout as L
from jobq.model import encode_job
from jobq.spool import journal
from jobq.spool.files import FILE_MODE, translated
from jobq.spool.jobs import JobFiles

if TYPE_CHECKING:
    from collections.abc import Sequence

    from jobq.model import Job

__all__ = ("Publishing",)


class Publishing(JobFiles):
    """Job files published into the spool: single jobs, batches, deduplication keys."""

    def publish(self, jobs: Sequence[Job], due_us: int | None = None) -> list[bool]:
        """Publish ``jobs`` as one batch, durable when this returns if the spool is durable.

        Durable: each job file is written and synced in ``tmp/`` first and each directory
        synced once after the renames; or, where the filesystem allows, one flush covers them
        all (a journal line each, or a single job's fsync after its rename: see
        ``jobq.spool.journal``). A failure publishes nothing. Jobs whose deduplication key
        is taken are skipped.

        Args:
            jobs: the jobs to publish.
            due_us: publish into ``scheduled/`` to run at this time (µs since the epoch).

        Returns:
            For each job, True if it was published, False if its key was already taken.

        Raises:
            SerializationError: if a job's arguments are not JSON (nothing is published).
            SpoolError: if the filesystem refuses (nothing is published).
        """
        return self.publish_encoded(jobs, [encode_job(job) for job in jobs], due_us)

    def publish_encoded(
        self, jobs: Sequence[Job], data: Sequence[bytes], due_us: int | None = None
    ) -> list[bool]:
        """``publish`` for jobs already encoded (``encode_job``): ``data[i]`` is ``jobs[i]``'s."""
        durable_journal = self.durable and jobs and journal.usable(self.root)
        if durable_journal and all(job.key is None for job in jobs):
            return self._publish_journaled(jobs, data, due_us)
        if len(jobs) == 1 and jobs[0].key is None:
            return [self._publish_one(jobs[0], data[0], due_us)]
        return self._publish_batch(jobs, data, due_us)

    def _publish_batch(
        self, jobs: Sequence[Job], data: Sequence[bytes], due_us: int | None
    ) -> list[bool]:
        encoded = list(zip(jobs, data, strict=True))
        for job in jobs:
            self.ensure_queue(job.queue)
        staged: list[tuple[str, str]] = []
        writes: list[tuple[str, bytes]] = []
        claimed_keys: list[str] = []
        published: list[bool] = []
        renamed = 0
        try:
            with translated("enqueue"):
                for job, raw in encoded:
                    if job.key is not None and not self._take_key(job.id, claimed_keys):
                        published.append(False)
                        continue
                    tmp = self._temp_path(job.id, ".job")
                    writes.append((tmp, raw))
                    staged.append((tmp, self._publish_target(job, due_us)))
                    published.append(True)
                if writes:
                    self.write_new_many(writes)  # one syncfs for the batch where that is safe
                if claimed_keys:
                    self.fsync_dir(self.path(L.KEYS))
                for tmp, dest in staged:
                    self.place(tmp, dest)
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

    def _publish_journaled(
        self, jobs: Sequence[Job], data: Sequence[bytes], due_us: int | None
    ) -> list[bool]:
        # Durable in one flush (see ``jobq.spool.journal``): the files are published as
        # non-durable ones, then their bytes appended to this process's journal and flushed.
        # If that fails they are taken back, unless a worker claimed one already.
        for job in jobs:
            self.ensure_queue(job.queue)
        placed: list[str] = []
        with translated("enqueue"):
            try:
                for job, raw in zip(jobs, data, strict=True):
                    dest = self._publish_target(job, due_us)
                    self._place_new(dest, raw, sync=False)
                    placed.append(dest)
                journal.journal_for(self.root).append(data)
            except BaseException:
                for dest in placed:
                    with contextlib.suppress(OSError):
                        os.unlink(dest)
                raise
        return [True] * len(jobs)

    def _publish_one(self, job: Job, data: bytes, due_us: int | None) -> bool:
        # ``publish`` for the commonest call, one job without a key, with none of the batch's
        # bookkeeping: a single enqueue is the producer's hot path. Taken back if its
        # directory cannot be synced (not known durable, so reported as failed).
        self.ensure_queue(job.queue)
        target = self._publish_target(job, due_us)
        with translated("enqueue"):
            if self.durable and journal.sync_after_rename(self.root):
                self._publish_then_sync(target, data)
            else:
                self._publish_file(target, data, take_back=True)
        return True

    def _publish_target(self, job: Job, due_us: int | None) -> str:
        name = job.file_name
        if job.after:
            return f"{self.waiting_dir(job.queue)}/{name.filename}"
        if due_us is None:
            return f"{self.pending_dir(job.queue)}/{name.filename}"
        return f"{self.scheduled_dir(job.queue)}/{name.scheduled_name(due_us)}"

    def _take_key(self, job_id: str, taken: list[str]) -> bool:
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            os.close(os.open(self.path(L.KEYS, job_id), flags, FILE_MODE))
        except FileExistsError:
            return False
        taken.append(job_id)
        return True

    def release_key(self, job_id: str) -> None:
        """Forget a deduplication key so that the same key can be enqueued again."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(L.KEYS, job_id))
