"""File events: inotify instances that turn renames into wake-ups of waiters.

Two kinds of hub share one implementation (``_Hub``: watches, subscribers, a watch left
lingering for the next waiter, overflow and deleted directories):

- the process-wide hub, read by one daemon thread, for waiters outside an event loop
  (``result_sync``) and wherever a loop cannot read a descriptor itself;
- one hub per event loop, whose descriptor the loop reads itself (asyncio: a reader callback;
  trio: a system task), for the worker's claim loop and ``await result()``: a wake-up then
  costs no hop from a thread into the loop (about 100 µs of a round trip on this VM,
  docs/performance.md).

Events only cut waits short: every waiter still polls (``jobq.waiting``), so an event that
is lost or never comes delays a waiter by one poll and loses nothing.

Failure story: a hub that cannot be made (no inotify, no instances left) means polling; a
loop's hub closes its descriptor when its loop ends (trio) or is found closed (asyncio).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jobq.waiting import events_enabled, local_filesystem

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

try:  # Linux only; elsewhere every wait polls (``events_enabled`` says no).
    import inotify_simple
except ImportError:  # pragma: no cover - not on Linux
    inotify_simple = None

__all__ = ("LINGER", "watching")


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
    """One inotify instance and its watches, shared by the waiters it serves.

    Sharing matters: the kernel allows 128 inotify instances per user by default, and a
    thousand concurrent ``result()`` calls must not each hold a descriptor. Whoever reads the
    descriptor (``read_forever`` in a thread, or ``read_ready`` on an event loop) hands the
    events to ``_dispatch``.
    """

    def __init__(self, *, nonblocking: bool = False) -> None:
        assert inotify_simple is not None
        self.pid = os.getpid()
        if getattr(inotify_simple, "_libc", None) is None:
            # inotify_simple finds libc with ctypes.util.find_library, which runs
            # `ldconfig -p` in a subprocess: 14-40 ms on the first wait of every process
            # (a stalled event loop, a slower worker start). The C library is loaded already.
            inotify_simple._libc = ctypes.CDLL(None, use_errno=True)
        self._inotify: Any = inotify_simple.INotify(nonblocking=nonblocking)
        self.fd: int = self._inotify.fileno()
        self._mask = int(
            inotify_simple.flags.MOVED_TO
            | inotify_simple.flags.CLOSE_WRITE
            | inotify_simple.flags.ONLYDIR
        )
        self._lock = threading.Lock()
        self._watches: dict[int, _Watch] = {}
        self.closed = False

    def close(self) -> None:
        """Stop delivering (after a fork the thread is gone; the descriptor goes too)."""
        self.closed = True
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
        # A watch left without subscribers lingers (see LINGER); the reader removes it when an
        # event finds it idle for longer.
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

    def read_forever(self) -> None:
        """Read and deliver events until the descriptor is closed (a daemon thread's life)."""
        assert inotify_simple is not None
        while True:
            try:
                data = os.read(self.fd, 65536)  # blocks without holding the GIL
            except OSError:
                return  # closed
            self._dispatch(inotify_simple.parse_events(data))

    def read_ready(self) -> None:
        """Read and deliver what is there now (the descriptor is non-blocking)."""
        assert inotify_simple is not None
        try:
            data = os.read(self.fd, 65536)
        except OSError:  # nothing after all, or closed
            return
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
    """The process-wide hub and its reader thread (made on first use); None: poll."""
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
            else:
                threading.Thread(target=_hub.read_forever, name="jobq-watch", daemon=True).start()
        return _hub


# One hub per asyncio loop (closed once its loop is found closed, or collected) and per trio
# run (closed by its system task when the run ends).
_loop_hubs: weakref.WeakKeyDictionary[Any, _Hub] = weakref.WeakKeyDictionary()
_loop_hubs_lock = threading.Lock()  # loops of several threads may look at once


def _get_loop_hub() -> _Hub | None:
    """The running event loop's own hub (made on first use); None where there is none."""
    if inotify_simple is None:
        return None
    try:
        loop: Any = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:
        return _get_trio_hub()
    with _loop_hubs_lock:
        return _asyncio_hub(loop)


def _asyncio_hub(loop: asyncio.AbstractEventLoop) -> _Hub | None:
    hub = _loop_hubs.get(loop)
    if hub is not None and hub.pid == os.getpid() and not hub.closed:
        return hub
    for other, stale in list(_loop_hubs.items()):  # hubs of loops that ended meanwhile
        if isinstance(other, asyncio.AbstractEventLoop) and (
            other.is_closed() or stale.pid != os.getpid()
        ):
            _loop_hubs.pop(other, None)
            stale.close()
    try:
        made = _Hub(nonblocking=True)
    except OSError:  # no inotify instances left
        return None
    try:
        loop.add_reader(made.fd, made.read_ready)
    except (NotImplementedError, RuntimeError):  # a loop without add_reader
        made.close()
        return None
    _loop_hubs[loop] = made
    weakref.finalize(loop, made.close)
    return made


def _get_trio_hub() -> _Hub | None:
    try:
        import trio

        token = trio.lowlevel.current_root_task()
    except (ImportError, RuntimeError):
        return None
    if token is None:
        return None
    with _loop_hubs_lock:
        hub = _loop_hubs.get(token)
        if hub is not None and not hub.closed:
            return hub
        try:
            hub = _Hub(nonblocking=True)
        except OSError:
            return None
        _loop_hubs[token] = hub

    async def read_until_the_run_ends(made: _Hub = hub) -> None:
        try:
            while True:
                await trio.lowlevel.wait_readable(made.fd)
                made.read_ready()
        finally:
            made.close()

    trio.lowlevel.spawn_system_task(read_until_the_run_ends, name="jobq-watch")
    return hub


@contextlib.contextmanager
def watching(
    directories: Iterable[str],
    wake: Callable[[], None],
    *,
    name: str | None = None,
    enabled: bool | None = None,
    loop_wake: Callable[[], None] | None = None,
) -> Iterator[bool]:
    """Call ``wake()`` (from the watcher thread) when a file lands in one of ``directories``;
    or, given ``loop_wake`` and called on a running event loop, call that from the loop itself.

    Subscribe *before* looking at the directories, then look, then wait: an event that comes
    in between is not lost.

    Args:
        directories: directories to watch (not recursive).
        wake: called from another thread; must be quick and thread-safe.
        name: only files of this name wake (e.g. ``ID.json``).
        enabled: force events on or off; default: on unless ``$JOBQ_NO_WATCH``.
        loop_wake: called on this event loop's thread instead, where the loop can read the
            events itself (``wake`` stays the way where it cannot).

    Yields:
        True if events are live and the filesystem is local, so that polling may slow down
        to ``TRUSTED_POLL``; False if the caller must keep its fast poll.
    """
    dirs = list(directories)
    hub, watches = None, None
    if events_enabled(enabled) and dirs:
        if loop_wake is not None:
            hub = _get_loop_hub()
            sub = _Subscriber(loop_wake, name)
            watches = hub.subscribe(dirs, sub) if hub is not None else None
        if watches is None:
            hub = _get_hub()
            sub = _Subscriber(wake, name)
            watches = hub.subscribe(dirs, sub) if hub is not None else None
    try:
        yield watches is not None and all(local_filesystem(d) for d in dirs)
    finally:
        if hub is not None and watches is not None:
            hub.unsubscribe(watches, sub)
