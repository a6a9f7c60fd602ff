"""Recording outcomes: the group commit, its fence, and commits others left halfway.

A job file in ``running/`` steps aside to its fence name beside itself (the fence: of the
worker and a reaper, one rename wins); then the staged record is renamed to its free place
``STATE/QUEUE/ID.json`` (the commit point); the fence file goes once the group's records are
synced. Recovery rests on one invariant: a job file at its fence name always has its whole
record staged in ``tmp/`` or already in place, because the record is staged before the fence
and a failed commit puts the file back before it removes its staged record. Whoever finds a
fence file (a reaper, the temp collector) therefore completes the commit from the staged
record, or, finding none, knows the record landed and drops the file: a job whose outcome
was decided never runs again.

A job file elsewhere (a pending job cancelled), and every job file on a network filesystem,
moves to the record's place and the record replaces it; a commit cut between those renames
leaves a bare record that is completed from the staged one. On a network filesystem the server
replaces the file within its one RENAME, while the fence costs it a LOOKUP and an UNLINK more
per job (31.8 operations a job against 29.7 on GlusterFS, docs/performance.md); ext4's
writeback of a replaced file, which the fence avoids, is a local disk's cost.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from jobq import layout as L
from jobq.errors import InvalidName
from jobq.layout import fence_name, parse_running
from jobq.model import CorruptJob, Outcome, encode_record
from jobq.names import check_job_id, check_queue
from jobq.spool import journal
from jobq.spool.files import list_names, translated
from jobq.spool.jobs import Claimed, JobFiles
from jobq.waiting import local_filesystem

if TYPE_CHECKING:
    from collections.abc import Sequence

    from jobq.spool.jobs import Finish

__all__ = ("Commits", "fence_path")


class Commits(JobFiles):
    """Job files plus the recording of outcomes (see the module's docstring)."""

    def commit(self, finishes: Sequence[Finish]) -> list[bool]:
        """Record outcomes: one group commit with one fsync per directory.

        Each record is written (and synced) in ``tmp/`` first; then per outcome the job file
        moves out of the way (a running job on a local filesystem to its fence name, any
        other to the record's place) and the record is renamed into place. A job file that
        is gone was taken back by a reaper: that outcome is discarded. Why a fence beside
        the job file rather than the record renamed over it: ext4 writes back at once a file
        renamed over another, a disk write per job even without durability.

        On an error nothing is left half-done that the caller cannot redo: fence files not
        yet past their commit point are put back, and staged records no one needs removed.

        Returns:
            For each outcome, True if it was recorded, False if it was fenced.
        """
        results: list[bool] = []
        running = self.path(L.RUNNING, "")
        beside = _fence_beside(self.root)
        with translated("record a job outcome"):
            temps = [
                self._temp_path(f"{fin.state}@{fin.queue}@{fin.job_id}", ".rec") for fin in finishes
            ]
            # One syncfs for the batch where that is safe. On failure (e.g. ENOSPC) it removes
            # the files it wrote: nothing is committed and nothing is left behind.
            inodes = self.write_new_many(
                [(t, f.record) for t, f in zip(temps, finishes, strict=True)]
            )
            touched: set[str] = set()
            fenced: list[str] = []
            try:
                for fin, tmp, tmp_ino in zip(finishes, temps, inodes, strict=True):
                    self.ensure_queue(fin.queue)
                    dest = self.finished_path(fin.state, fin.queue, fin.job_id)
                    fence = fence_path(fin.src) if beside and fin.src.startswith(running) else dest
                    if not self.move(fin.src, fence):
                        self.remove(tmp)
                        results.append(False)
                        continue
                    if not self.rename(tmp, dest, src_ino=tmp_ino):
                        # Our staged record was taken by someone who thought us dead (we were
                        # frozen). A fence still there says the job is ours: record it again.
                        if fence != dest and not os.path.lexists(fence):
                            results.append(False)
                            continue
                        self._publish_file(dest, fin.record)
                    if fence != dest:
                        fenced.append(fence)
                    touched.add(os.path.dirname(dest))
                    results.append(True)
            except BaseException:
                failed = len(results)
                self._undo(finishes[failed], temps[failed])
                for tmp in temps[failed + 1 :]:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                raise
            for directory in sorted(touched):
                self.fsync_dir(directory)
            # Only once the records are durable: until then a power cut finds the job file.
            for fence in fenced:
                self.remove(fence)
        return results

    def _undo(self, finish: Finish, tmp: str) -> None:
        """Undo the commit of the outcome that failed: the job file back, its record unstaged.

        The record stays staged while the job file is not back at its running name: at its
        fence name it keeps the invariant; gone (moved bare to the record's place) the
        record's completion needs it.
        """
        if finish.src.startswith(self.path(L.RUNNING, "")):
            with contextlib.suppress(OSError):
                self.move(fence_path(finish.src), finish.src)
        if os.path.lexists(finish.src):
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def unfence(self, src: str) -> bool:
        """Put a running job file left at its fence name (a commit that failed) back as ``src``.

        For the worker that holds the job, before it commits the outcome again. Returns
        False if there was no such file.
        """
        with translated("record a job outcome"):
            return self.move(fence_path(src), src)

    def settle_fence(self, held: Claimed) -> str:
        """Finish the commit of a job file found at its fence name (its worker died in it).

        Returns:
            ``completed`` (its staged record put in place), ``dropped`` (its record was in
            place already), ``requeued`` (a power cut emptied its staged record: the job
            runs again, as any job whose outcome was lost) or ``gone``.
        """
        completed = lost = False
        # Only its worker's staged records: a fenced-out attempt's may linger beside them.
        pid = L.worker_pid(os.path.basename(os.path.dirname(held.path)))
        with translated("complete an interrupted commit"):
            for path, state in self._staged(held.queue, held.job_id, pid):
                try:
                    whole = _state_of(self.read_file(path)) == state
                except FileNotFoundError:
                    continue  # its worker put it in place meanwhile
                except (OSError, ValueError):
                    whole = False
                if whole and not completed:
                    dest = self.finished_path(state, held.queue, held.job_id)
                    if self.move(path, dest):
                        self.fsync_dir(os.path.dirname(dest))
                    completed = True
                    continue
                lost = lost or not whole
                self.remove(path)
            if lost and not completed and self.find_finished(held.job_id, [held.queue]) is None:
                return "requeued" if self.requeue(held.path, held.queue, held.name) else "gone"
            if not self.remove(held.path):
                return "gone"
        return "completed" if completed else "dropped"

    def complete_commits(self, pid: int) -> int:
        """Finish the commits that process ``pid`` left halfway.

        Called by the reaper for a dead worker, so that its last decided outcomes are
        complete at once rather than after ``collect_tmp``'s hour. Safe even if another
        host's live process has the same pid: its staged record is what it would put in
        place itself. Returns how many staged records were handled.
        """
        handled = 0
        marker = f".{pid}."
        directory = self.path(L.TMP)
        for filename in list_names(directory):
            if filename.endswith(".rec") and marker in filename:
                self._complete_commit(os.path.join(directory, filename), filename)
                handled += 1
        return handled

    def complete_commit_of(self, queue: str, job_id: str) -> bool:
        """Complete the commits one job's staged records belong to; whether it had any.

        For a reader that met the job's outcome record unreadable: a power cut between a
        commit's two renames can leave there the job file it moved, emptied (its bytes in a
        producer's journal), with the whole record still staged.
        """
        staged = self._staged(queue, job_id)
        for path, _ in staged:
            self._complete_commit(path, os.path.basename(path))
        return bool(staged)

    def _complete_commit(self, path: str, filename: str) -> None:
        """Complete the commit a staged record belongs to, or drop the record if it has none.

        A fence file of its job settles it (``settle_fence``). A destination that holds only
        the job (no ``state``) was renamed there by the commit that staged this record: the
        outcome is decided and only its contents are missing. Otherwise the commit never got
        past its fence (the job is still in ``running/`` for the reaper) or is complete. A
        staged record that is not a whole record (a power cut emptied it: durability off)
        must not replace a bare job: see ``_recover_bare``.
        """
        state, _, rest = filename.partition("@")
        queue, _, rest = rest.partition("@")
        try:
            if state not in L.FINISHED_STATES:
                raise InvalidName(f"not a state: {state!r}")
            queue, job_id = check_queue(queue), check_job_id(rest.split(".")[0])
        except InvalidName:
            self.remove(path)
            return
        for fence in self._running(queue, job_id, fences=True):
            with contextlib.suppress(InvalidName):
                self.settle_fence(Claimed(*parse_running(os.path.basename(fence)), fence))
        dest = self.finished_path(state, queue, job_id)
        bare = self._bare(dest, queue, job_id)
        if bare is None:
            return
        if not bare:
            self.remove(path)
            return
        with translated("complete an interrupted commit"):
            try:
                whole = _state_of(self.read_file(path)) == state
            except FileNotFoundError:
                return  # another process completed it meanwhile
            except (OSError, ValueError):
                whole = False
            if not whole:
                self._recover_bare(dest, state)
                self.remove(path)
            elif self.rename(path, dest):
                self.fsync_dir(os.path.dirname(dest))

    def _bare(self, dest: str, queue: str, job_id: str) -> bool | None:
        """Whether ``dest`` holds the job alone, its commit's record still to come; None to
        leave the staged record where it is for now."""
        try:
            return _state_of(self.read_file(dest)) is None
        except FileNotFoundError:
            # A job file still at its running name may yet be fenced by a worker that froze
            # after staging this: that fence must find it. The reaper drops it otherwise.
            return None if self._running(queue, job_id, fences=False) else False
        except ValueError:
            # Empty or torn: the job file this commit moved there, emptied by a power cut
            # before it was synced, if a producer's journal holds the job.
            return journal.lookup(self.root, job_id) is not None
        except OSError:
            return False

    def _recover_bare(self, dest: str, state: str) -> None:
        """Settle a bare record whose staged record was lost: the job is there, its outcome not.

        A job that ended ``done`` or ``failed`` goes back to pending and runs again, as any
        job whose outcome was lost does (at least once); its lost start counts. One that was
        ``cancelled`` stays cancelled: its record is written anew without the lost details.
        """
        try:
            if _state_of(self.read_file(dest)) is not None:
                return  # whole: another process completed the commit meanwhile
        except ValueError:
            pass  # emptied or torn: a journal may hold the job
        except OSError:
            return
        try:
            job = self.read_job(dest, os.path.basename(dest).removesuffix(L.JOB_SUFFIX))
        except (OSError, CorruptJob):
            return  # gone, or not a job: whoever reads the record quarantines it
        if state == L.CANCELLED:
            outcome = Outcome(L.CANCELLED, job.attempts_base, None, time.time())
            self._publish_file(dest, encode_record(job, outcome))
            return
        name = replace(job.file_name, attempts=job.attempts_base + 1)
        target = os.path.join(self.pending_dir(job.queue), name.filename)
        self.ensure_queue(job.queue)
        if self.move(dest, target):
            self.fsync_dir(os.path.dirname(target))

    def drop_staged(self, queue: str, job_id: str, pid: int) -> None:
        """Remove the records process ``pid`` staged for a job it no longer holds (reaped)."""
        for path, _ in self._staged(queue, job_id, pid):
            self.remove(path)

    def _staged(self, queue: str, job_id: str, pid: int | None = None) -> list[tuple[str, str]]:
        """The staged records of one job in ``tmp/`` (of process ``pid``), with their states."""
        found = []
        directory = self.path(L.TMP)
        prefix = f"{queue}@{job_id}." if pid is None else f"{queue}@{job_id}.{pid}."
        for filename in list_names(directory):
            state, _, rest = filename.partition("@")
            if filename.endswith(".rec") and rest.startswith(prefix):
                found.append((os.path.join(directory, filename), state))
        return found

    def _running(self, queue: str, job_id: str, *, fences: bool) -> list[str]:
        """One job's files in any worker's running directory: at fence names, or not."""
        pattern = os.path.join(glob.escape(self.path(L.RUNNING)), "*", f"{queue}@*-{job_id}-*")
        return [p for p in glob.glob(pattern) if L.is_fence_name(os.path.basename(p)) == fences]


@functools.lru_cache(maxsize=16)
def _fence_beside(root: str) -> bool:
    """Whether commits under ``root`` fence running job files beside themselves (module doc)."""
    return local_filesystem(root)


def fence_path(src: str) -> str:
    """Where the running job file ``src`` steps aside to while its outcome is committed."""
    directory, _, name = src.rpartition("/")
    return f"{directory}/{fence_name(name)}"


def _state_of(raw: bytes) -> str | None:
    """The ``state`` of an outcome record, None for a bare one (the job without its outcome).

    Raises:
        ValueError: if ``raw`` is not a JSON object (orjson's decode error is one).
    """
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    state = data.get("state")
    return state if isinstance(state, str) else None
