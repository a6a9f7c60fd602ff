"""How waiting loops learn that something changed: file events where the kernel gives them,
polling always.

An idle worker waits for job files to land in ``pending/`` (or ``scheduled/``), a waiting
``result()`` for its record to land in ``done|failed|cancelled/Q/``. On Linux inotify turns
those renames into wake-ups at once (``jobq.watch``: one instance per event loop, read by the
loop itself, and one per process read by a daemon thread for everyone else); everywhere else,
and whenever a watch cannot be set, the waiter polls.

Polling stays the truth: inotify only reports changes made through this kernel, so on a
network filesystem (NFS, GlusterFS, CephFS, any FUSE mount) a job published by another host
raises no event. Where the spool is on a local filesystem the events are complete and the
poll is only a slow safety net (``TRUSTED_POLL``); elsewhere the poll keeps its fast pace.
``JOBQ_NO_WATCH=1`` (or ``Worker(watch=False)``) turns events off altogether.
"""

from __future__ import annotations

import asyncio
import functools
import os
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

try:  # Linux only; elsewhere every wait polls.
    import inotify_simple
except ImportError:  # pragma: no cover - not on Linux
    inotify_simple = None

__all__ = (
    "NO_WATCH_ENV",
    "TRUSTED_POLL",
    "Backoff",
    "Wakeup",
    "call_soon_threadsafe",
    "events_enabled",
    "filesystem_type",
    "local_filesystem",
    "mount_of",
    "poll_backoff",
)

#: Set to 1 to never use file events (poll only).
NO_WATCH_ENV = "JOBQ_NO_WATCH"

#: Seconds between safety-net polls when file events are live on a local filesystem.
TRUSTED_POLL = 1.0

# Filesystems whose every change goes through this kernel, so inotify sees all of them.
# Anything else (nfs, cifs, fuse.*, ceph, glusterfs, 9p, virtiofs, unknown) may change
# behind our back and keeps the fast poll.
_LOCAL_FS = frozenset(
    {
        "ext2", "ext3", "ext4", "xfs", "btrfs", "bcachefs", "zfs", "f2fs", "jfs", "reiserfs",
        "tmpfs", "ramfs", "overlay", "vfat", "exfat", "ntfs3", "hfsplus",
    }
)  # fmt: skip


class Backoff:
    """Growing sleep intervals: ``first``, then times ``factor`` each call, capped at ``cap``.

    Args:
        first: the first interval in seconds.
        cap: the longest interval in seconds.
        factor: growth per call.
    """

    def __init__(self, first: float = 0.0005, cap: float = 0.05, factor: float = 1.5) -> None:
        self.first = first
        self.cap = cap
        self.factor = factor
        self._next = first

    def next(self) -> float:
        """The next interval to sleep."""
        current = self._next
        self._next = min(self.cap, current * self.factor)
        return current

    def reset(self) -> None:
        """Start again from the first interval (something happened)."""
        self._next = self.first


def poll_backoff(live: bool, first: float, cap: float) -> Backoff:
    """The pace of a waiting loop's looks at the spool.

    Args:
        live: whether trusted file events wake the loop (see ``watching``); then a look every
            ``TRUSTED_POLL`` seconds is only a safety net.
        first: the first interval of the fast backoff used otherwise.
        cap: its longest interval.
    """
    return Backoff(TRUSTED_POLL, TRUSTED_POLL) if live else Backoff(first, cap)


def events_enabled(requested: bool | None = None) -> bool:
    """Whether waits may use file events: ``requested`` if given, else not ``$JOBQ_NO_WATCH``."""
    if inotify_simple is None:
        return False
    if requested is not None:
        return requested
    return os.environ.get(NO_WATCH_ENV, "").strip().lower() not in ("1", "true", "yes", "on")


@functools.lru_cache(maxsize=64)
def mount_of(path: str) -> tuple[str, str]:
    """The type of the filesystem ``path`` lives on (``ext4``, ``nfs4``...) and its device
    (``major:minor``); empty strings if unknown."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return "", ""
    real = os.path.realpath(path)
    best, found = "", ("", "")
    for line in lines:
        fields = line.split(" ")
        if "-" not in fields or len(fields) < 5:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, found = mount, (fields[fields.index("-") + 1], fields[2])
    return found


def filesystem_type(path: str) -> str:
    """The type of the filesystem ``path`` lives on (``ext4``, ``nfs4``...), '' if unknown."""
    return mount_of(path)[0]


def local_filesystem(path: str) -> bool:
    """Whether ``path`` lives on a filesystem that only this kernel changes."""
    return filesystem_type(path) in _LOCAL_FS


# -- waking a task from the watcher thread --------------------------------------------------


def call_soon_threadsafe() -> Callable[[Callable[[], None]], object]:
    """The running event loop's way to run a callback soon, callable from any thread."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon


class Wakeup:
    """A flag that any thread may raise, waking the task of this event loop that waits on it.

    Create it inside the event loop. Raises from other threads are coalesced: while one is on
    its way into the loop, more are free.

    Args:
        on_raise: also called (in the event loop) each time the flag is raised.
    """

    def __init__(self, on_raise: Callable[[], None] | None = None) -> None:
        self._call_soon = call_soon_threadsafe()
        self._on_raise = on_raise
        self._event = anyio.Event()
        self._in_flight = False
        self.raised = False

    def raise_threadsafe(self) -> None:
        """Raise the flag from any thread (the watcher thread's callback)."""
        if self._in_flight:
            return
        self._in_flight = True
        try:
            self._call_soon(self._raise)
        except RuntimeError:  # the loop has ended (trio's RunFinishedError is one too)
            self._in_flight = False

    def raise_in_loop(self) -> None:
        """Raise the flag from this event loop's own thread (a hub the loop reads itself)."""
        self._raise()

    def _raise(self) -> None:
        self._in_flight = False
        self.raised = True
        self._event.set()
        if self._on_raise is not None:
            self._on_raise()

    def clear(self) -> None:
        """Lower the flag: call before looking, so a change after the look raises it again."""
        self.raised = False
        if self._event.is_set():
            self._event = anyio.Event()

    async def wait(self, timeout: float) -> None:
        """Return once the flag is raised, or after ``timeout`` seconds."""
        if self.raised:
            return
        with anyio.move_on_after(timeout):
            await self._event.wait()
