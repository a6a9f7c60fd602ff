"""The floor under a round trip: two asyncio processes passing a file by rename, no jobq.

Process A writes a 200-byte file, renames it into ``in/`` and waits; process B, woken by
inotify on its event loop, renames it into ``out/``; A, woken the same way, has its answer.
That is one create, two renames and two inotify wake-ups, about half of what a jobq round
trip needs (publish; claim; read; record written and renamed twice; the record read back).
``--wake thread`` has a daemon thread read the events and wake the loop
(``call_soon_threadsafe``), as jobq's waiters are woken (``jobq.waiting``).

    python benchmarks/file_pingpong.py [--dir /var/tmp] [--samples 500] [--wake loop|thread]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import inotify_simple

STOP = "stop"


WAKE = "loop"  # --wake, given to both processes
_arrived: dict[int, asyncio.Queue[list[inotify_simple.Event]]] = {}


def _read_in_a_thread(inotify: inotify_simple.INotify, loop: asyncio.AbstractEventLoop) -> None:
    queue = _arrived[inotify.fileno()]
    while True:
        try:
            events = inotify.read()
        except OSError:
            return
        try:
            loop.call_soon_threadsafe(queue.put_nowait, events)
        except RuntimeError:  # the loop has ended
            return


async def wait_moved(inotify: inotify_simple.INotify) -> list[inotify_simple.Event]:
    """The next events of ``inotify``: read by the event loop itself, or by a thread that
    then wakes the loop (``--wake thread``)."""
    if WAKE == "thread":
        if inotify.fileno() not in _arrived:
            _arrived[inotify.fileno()] = asyncio.Queue()
            reader = threading.Thread(
                target=_read_in_a_thread, args=(inotify, asyncio.get_running_loop()), daemon=True
            )
            reader.start()
        return await _arrived[inotify.fileno()].get()
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(inotify.fileno(), readable)
    try:
        await ready
    finally:
        loop.remove_reader(inotify.fileno())
    events: list[inotify_simple.Event] = inotify.read(timeout=0)
    return events


async def bounce(base: str) -> None:
    """Process B: move every file that lands in ``in/`` to ``out/`` until told to stop."""
    inotify = inotify_simple.INotify()
    inotify.add_watch(os.path.join(base, "in"), inotify_simple.flags.MOVED_TO)
    while True:
        for event in await wait_moved(inotify):
            if event.name == STOP:
                return
            os.rename(os.path.join(base, "in", event.name), os.path.join(base, "out", event.name))


async def serve(base: str, samples: int) -> list[float]:
    """Process A: send ``samples`` files, one at a time after a 2 ms pause; seconds each."""
    inotify = inotify_simple.INotify()
    inotify.add_watch(os.path.join(base, "out"), inotify_simple.flags.MOVED_TO)
    took = []
    for number in range(samples):
        await asyncio.sleep(0.002)
        begin = time.perf_counter()
        path = os.path.join(base, f"x{number}")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x" * 200)
        os.close(fd)
        os.rename(path, os.path.join(base, "in", f"j{number}"))
        await wait_moved(inotify)
        took.append(time.perf_counter() - begin)
    stop = os.path.join(base, STOP)
    os.close(os.open(stop, os.O_WRONLY | os.O_CREAT, 0o600))
    os.rename(stop, os.path.join(base, "in", STOP))
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="/var/tmp")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--wake", choices=["loop", "thread"], default="loop")
    parser.add_argument("--bounce", help=argparse.SUPPRESS)  # runs process B in that directory
    args = parser.parse_args()
    global WAKE
    WAKE = args.wake
    if args.bounce:
        asyncio.run(bounce(args.bounce))
        return
    base = tempfile.mkdtemp(dir=args.dir, prefix="pingpong-")
    try:
        os.mkdir(os.path.join(base, "in"))
        os.mkdir(os.path.join(base, "out"))
        other = subprocess.Popen([sys.executable, __file__, "--bounce", base, "--wake", args.wake])
        try:
            time.sleep(0.5)  # B has its watch
            took = sorted(asyncio.run(serve(base, args.samples))[10:])
        finally:
            other.wait(timeout=10)
        p50 = statistics.median(took) * 1e6
        p99 = took[int(len(took) * 0.99)] * 1e6
        print(f"{args.dir} ({args.wake}): file round trip p50 {p50:.0f} µs, p99 {p99:.0f} µs")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
