"""Concurrent durable enqueues of one event loop share a group commit.

A durable enqueue on its own pays two syncs: its job file, then its directory. A web app whose
requests each enqueue a job would pay them per request, one thread each, and the disk would
take the syncs one after another. Instead, the enqueues of one event loop and spool that come
while another enqueue is being written gather into a group; when that write ends, the group's
first enqueue writes the whole group as one batch (``SpoolDir.publish``: one sync of the files,
one of each directory), as ``enqueue_many`` does. An enqueue that finds no write under way goes
at once, alone: a lone producer waits for nothing more than before.

Each enqueue still returns only once its own job file is durable, and fails as it would alone:
a batch the filesystem refuses publishes none of its jobs, and each of their enqueues raises.
Each caller encodes its job first, so an argument that is not JSON fails its own call only.
"""

from __future__ import annotations

import copy
import weakref
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel

from jobq.model import encode_job

if TYPE_CHECKING:
    from jobq.model import Job
    from jobq.spool import SpoolDir

__all__ = ("Gathering", "gathering_for")

# Per event loop (asyncio's loop, trio's token), per spool directory: events belong to a loop.
_gatherings: weakref.WeakKeyDictionary[object, dict[str, Gathering]] = weakref.WeakKeyDictionary()


def gathering_for(spool: SpoolDir) -> Gathering:
    """The running event loop's gathering of enqueues into ``spool``."""
    loop = anyio.lowlevel.current_token().native_token
    by_root = _gatherings.setdefault(loop, {})
    found = by_root.get(spool.root)
    if found is None:
        found = by_root[spool.root] = Gathering(spool)
    return found


class _Group:
    """Enqueues written together, and how their write ended."""

    __slots__ = ("data", "done", "error", "jobs", "ready", "results")

    def __init__(self, ready: bool) -> None:
        self.jobs: list[Job] = []
        self.data: list[bytes] = []
        self.ready = anyio.Event()  # set: no write is under way, its first enqueue may write
        if ready:
            self.ready.set()
        self.done = anyio.Event()
        self.results: list[bool] = []
        self.error: BaseException | None = None


class Gathering:
    """The enqueues into one spool on one event loop: at most one write under way.

    Args:
        spool: the spool the jobs go to (durable: a non-durable enqueue costs no sync).
    """

    def __init__(self, spool: SpoolDir) -> None:
        self.spool = spool
        self._writing = False
        self._open: _Group | None = None  # the group later enqueues join

    async def publish(self, job: Job) -> bool:
        """Publish ``job`` with the enqueues around it; False if its key was taken.

        Raises:
            SerializationError: if its arguments are not JSON (nothing else is affected).
            SpoolError: if the filesystem refused its group (none of the group published).
        """
        data = encode_job(job)
        group = self._open
        if group is None:
            group = self._open = _Group(ready=not self._writing)
        index = len(group.jobs)
        group.jobs.append(job)
        group.data.append(data)
        # Shielded, as the thread call it stands for: an enqueue ends, published or failed,
        # before a cancellation reaches its caller. The wait lasts at most two writes.
        with anyio.CancelScope(shield=True):
            if index == 0:
                await group.ready.wait()  # a checkpoint: enqueues of the same moment join
                await self._write(group)
            else:
                await group.done.wait()
        if group.error is not None:
            if index == 0:
                raise group.error
            raise copy.copy(group.error) from group.error.__cause__
        return group.results[index]

    async def _write(self, group: _Group) -> None:
        if self._open is group:
            self._open = None  # enqueues from now on gather for the next write
        self._writing = True
        try:
            group.results = await anyio.to_thread.run_sync(
                self.spool.publish_encoded, group.jobs, group.data
            )
        except BaseException as exc:
            group.error = exc
        finally:
            self._writing = False
            group.done.set()
            if self._open is not None:
                self._open.ready.set()
