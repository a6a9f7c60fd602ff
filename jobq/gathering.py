"""Concurrent durable enqueues of one event loop share a group commit.

A durable enqueue on its own pays two syncs: its job file, then its directory. A web app whose
requests each enqueue a job would pay them per request, one thread each, and the disk would
take the syncs one after another. Instead, the enqueues of one event loop and spool go to one
writer thread: while it writes, the enqueues that come gather into a group per queue, and when
it is done it writes each group as one batch (``SpoolDir.publish``: one sync of the files, one
of each directory), as ``enqueue_many`` does. An enqueue that finds the writer idle is written
at once, alone: a lone producer waits for nothing more than before.

Each enqueue still returns only once its own job file is durable, and fails as it would alone:
a batch the filesystem refuses publishes none of its jobs, and each of their enqueues raises
(groups are per queue, so a queue whose directory refuses fails only its own enqueues).
Each caller encodes its job first, so an argument that is not JSON fails its own call only.
The writing belongs to the thread, not to any caller's task: whatever cancels a caller (anyio,
``asyncio.wait_for``, a server dropping a request) cannot leave a group unwritten or its other
enqueues waiting.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from jobq.model import encode_job
from jobq.waiting import call_soon_threadsafe

if TYPE_CHECKING:
    from collections.abc import Callable

    from jobq.model import Job
    from jobq.spool import SpoolDir

__all__ = ("Gathering", "gathering_for")

# Per event loop (events belong to one), per spool directory.
_gatherings: anyio.lowlevel.RunVar[dict[str, Gathering]] = anyio.lowlevel.RunVar("jobq")


def gathering_for(spool: SpoolDir) -> Gathering:
    """The running event loop's gathering of enqueues into ``spool``."""
    try:
        by_root = _gatherings.get()
    except LookupError:
        by_root = {}
        _gatherings.set(by_root)
    found = by_root.get(spool.root)
    if found is None:
        found = by_root[spool.root] = Gathering(spool)
    return found


class _Group:
    """Enqueues written together, and how their write ended."""

    __slots__ = ("data", "done", "error", "jobs", "results")

    def __init__(self) -> None:
        self.jobs: list[Job] = []
        self.data: list[bytes] = []
        self.done = anyio.Event()
        self.results: list[bool] = []
        self.error: BaseException | None = None


class Gathering:
    """The enqueues into one spool from one event loop, and the thread that writes them.

    Create it in that event loop (``gathering_for``).

    Args:
        spool: the spool the jobs go to (durable: a non-durable enqueue costs no sync).
    """

    def __init__(self, spool: SpoolDir) -> None:
        self.spool = spool
        self._call_soon: Callable[[Callable[[], None]], object] = call_soon_threadsafe()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="jobq-enqueue")
        self._lock = threading.Lock()  # guards _open and _writing, shared with the writer
        self._open: dict[str, _Group] = {}  # by queue: the groups later enqueues join
        self._writing = False

    async def publish(self, job: Job) -> bool:
        """Publish ``job`` with the enqueues around it; False if its key was taken.

        Raises:
            SerializationError: if its arguments are not JSON (nothing else is affected).
            SpoolError: if the filesystem refused its group (none of the group published).
        """
        await anyio.lowlevel.checkpoint_if_cancelled()  # cancelled already: nothing published
        data = encode_job(job)
        with self._lock:
            group = self._open.get(job.queue)
            if group is None:
                group = self._open[job.queue] = _Group()
            index = len(group.jobs)
            group.jobs.append(job)
            group.data.append(data)
            start, self._writing = not self._writing, True
        if start:
            self._writer.submit(self._write_all)
        # Shielded, as the thread call it stands for: an enqueue ends, published or failed,
        # before an anyio cancellation reaches its caller (at most two writes later).
        with anyio.CancelScope(shield=True):
            await group.done.wait()
        if group.error is not None:
            if index == 0:
                raise group.error
            raise copy.copy(group.error) from group.error.__cause__
        return group.results[index]

    def _write_all(self) -> None:
        """In the writer thread: write the open groups, and those that gathered meanwhile."""
        while True:
            with self._lock:
                groups, self._open = list(self._open.values()), {}
                if not groups:
                    self._writing = False
                    return
            for group in groups:
                try:
                    group.results = self.spool.publish_encoded(group.jobs, group.data)
                except BaseException as exc:
                    group.error = exc
                with contextlib.suppress(RuntimeError):  # the loop has ended: nobody waits
                    self._call_soon(group.done.set)
