"""How waiting loops learn that something changed: file events where the kernel gives them,
polling always.

An idle worker waits for job files to land in ``pending/`` (or ``scheduled/``), a waiting
``result()`` for its record to land in ``done|failed|cancelled/Q/``. On Linux one inotify
instance per process (read by one daemon thread) turns those renames into wake-ups at once;
everywhere else, and whenever a watch cannot be set, the waiter polls.

Polling stays the truth: inotify only reports changes made through this kernel, so on a
network filesystem (NFS, GlusterFS, CephFS, any FUSE mount) a job published by another host
raises no event. Where the spool is on a local filesystem the events are complete and the
poll is only a slow safety net (``TRUSTED_POLL``); elsewhere the poll keeps its fast pace.
``JOBQ_NO_WATCH=1`` (or ``Worker(watch=False)``) turns events off altogether.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

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
    "watching",
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


# -- the process-wide watcher ---------------------------------------------------------------


@dataclass(eq=False)
class _Subscriber:
    wake: Callable[[], None]
    name: str | None


@dataclass(eq=False)
class _Watch:
    wd: int
    subscribers: list[_Subscriber] = field(default_factory=list)
    idle_since: float | None = None  # time.monotonic() when its last subscriber left


#: Seconds a watch nobody waits on is kept for the next waiter: a loop of ``result()`` calls
#: then neither removes nor sets up the kernel's watch of each directory on every call. It is
#: removed by the first event that finds it idle longer; a quiet directory costs nothing.
LINGER = 5.0


class _Hub:
    """One inotify instance and one daemon thread per process, shared by every waiter.

    Sharing matters: the kernel allows 128 inotify instances per user by default, and a
    thousand concurrent ``result()`` calls must not each hold a descriptor.
    """

    def __init__(self) -> None:
        assert inotify_simple is not None
        self.pid = os.getpid()
        if getattr(inotify_simple, "_libc", None) is None:
            # inotify_simple finds libc with ctypes.util.find_library, which runs
            # `ldconfig -p` in a subprocess: 14-40 ms on the first wait of every process
            # (a stalled event loop, a slower worker start). The C library is loaded already.
            inotify_simple._libc = ctypes.CDLL(None, use_errno=True)
        self._inotify: Any = inotify_simple.INotify()
        self._mask = int(
            inotify_simple.flags.MOVED_TO
            | inotify_simple.flags.CLOSE_WRITE
            | inotify_simple.flags.ONLYDIR
        )
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}
        threading.Thread(target=self._read_forever, name="jobq-watch", daemon=True).start()

    def close(self) -> None:
        """Stop delivering (after a fork the thread is gone; the descriptor goes too)."""
        with contextlib.suppress(OSError):
            self._inotify.close()

    def subscribe(self, directories: Iterable[str], sub: _Subscriber) -> list[_Watch] | None:
        """Watch ``directories`` for ``sub``; None (and nothing kept) if any cannot be watched."""
        taken: list[_Watch] = []
        with self._lock:
            for directory in directories:
                try:
                    # Of a directory watched already (a lingering watch) this returns its wd.
                    wd = self._inotify.add_watch(directory, self._mask)
                except OSError:  # missing directory, watch limit reached, no inotify here
                    self._drop(taken, sub)
                    return None
                watch = self._watches.setdefault(wd, _Watch(wd))
                watch.idle_since = None
                watch.subscribers.append(sub)
                taken.append(watch)
        return taken

    def unsubscribe(self, watches: list[_Watch], sub: _Subscriber) -> None:
        """Forget ``sub``; a directory nobody waits on any more keeps its watch a while
        (``LINGER``)."""
        with self._lock:
            self._drop(watches, sub)

    def _drop(self, watches: list[_Watch], sub: _Subscriber) -> None:
        # A watch left without subscribers lingers (see LINGER); the reader thread removes it
        # when an event finds it idle for longer.
        for watch in watches:
            if sub in watch.subscribers:
                watch.subscribers.remove(sub)
            if not watch.subscribers:
                watch.idle_since = time.monotonic()

    def _forget(self, watch: _Watch, *, remove: bool) -> None:
        if self._watches.get(watch.wd) is watch:
            del self._watches[watch.wd]
        if remove:
            with contextlib.suppress(OSError):  # gone with its directory
                self._inotify.rm_watch(watch.wd)

    def _read_forever(self) -> None:
        assert inotify_simple is not None
        fd = self._inotify.fileno()
        while True:
            try:
                data = os.read(fd, 65536)  # blocks without holding the GIL
            except OSError:
                return  # closed
            self._dispatch(inotify_simple.parse_events(data))

    def _dispatch(self, events: list[Any]) -> None:
        assert inotify_simple is not None
        overflow = inotify_simple.flags.Q_OVERFLOW
        ignored = inotify_simple.flags.IGNORED
        wakes: dict[Callable[[], None], None] = {}
        with self._lock:
            for event in events:
                if event.mask & overflow:  # events were lost: everyone looks again
                    for every in self._watches.values():
                        wakes.update(dict.fromkeys(s.wake for s in every.subscribers))
                    continue
                watch = self._watches.get(event.wd)
                if watch is None:
                    continue
                if event.mask & ignored:  # its directory is gone: waiters look (and poll)
                    self._forget(watch, remove=False)
                    wakes.update(dict.fromkeys(s.wake for s in watch.subscribers))
                    continue
                idle = watch.idle_since
                if idle is not None and time.monotonic() - idle > LINGER:
                    self._forget(watch, remove=True)
                    continue
                for sub in watch.subscribers:
                    if sub.name is None or sub.name == event.name or not event.name:
                        wakes[sub.wake] = None
        for wake in wakes:
            with contextlib.suppress(Exception):  # a waiter whose event loop has ended
                wake()


_hub: _Hub | None = None
_hub_failed = False
_hub_lock = threading.Lock()


def _get_hub() -> _Hub | None:
    global _hub, _hub_failed
    with _hub_lock:
        if _hub is not None and _hub.pid != os.getpid():  # forked: the thread stayed behind
            _hub.close()
            _hub, _hub_failed = None, False
        if _hub is None and not _hub_failed:
            try:
                _hub = _Hub()
            except OSError:  # no inotify instances left: poll
                _hub_failed = True
        return _hub


@contextlib.contextmanager
def watching(
    directories: Iterable[str],
    wake: Callable[[], None],
    *,
    name: str | None = None,
    enabled: bool | None = None,
) -> Iterator[bool]:
    """Call ``wake()`` (from the watcher thread) when a file lands in one of ``directories``.

    Subscribe *before* looking at the directories, then look, then wait: an event that comes
    in between is not lost.

    Args:
        directories: directories to watch (not recursive).
        wake: called from another thread; must be quick and thread-safe.
        name: only files of this name wake (e.g. ``ID.json``).
        enabled: force events on or off; default: on unless ``$JOBQ_NO_WATCH``.

    Yields:
        True if events are live and the filesystem is local, so that polling may slow down
        to ``TRUSTED_POLL``; False if the caller must keep its fast poll.
    """
    dirs = list(directories)
    hub = _get_hub() if events_enabled(enabled) and dirs else None
    sub = _Subscriber(wake, name)
    watches = hub.subscribe(dirs, sub) if hub is not None else None
    try:
        yield watches is not None and all(local_filesystem(d) for d in dirs)
    finally:
        if hub is not None and watches is not None:
            hub.unsubscribe(watches, sub)


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
