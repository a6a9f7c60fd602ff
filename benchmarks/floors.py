"""The raw floors under jobq's numbers: its file operations alone, in Python, no jobq code.

``public_workload.py`` measures these in the same rounds as the systems, on the same disk, so
that a ratio jobq misses can be set against what the system calls themselves allow:

- ``rename``: one enqueue's file: O_EXCL create + write + close + rename ``tmp/`` ->
  ``pending/``; ``rename+fsync`` adds an fsync of the file and of ``pending/``;
- ``rename+fsync-after``: ``rename``, then an fsync of the file (jobq's durable enqueue on
  ext4 without a journal, whose fsync of a newly named file also writes its directory);
- ``rename+journal``: ``rename``, then the job appended to a journal and fdatasynced (jobq's
  durable enqueue on ext4 with a journal or xfs, ``jobq.spool.journal``);
- ``append+fdatasync``: what Redis's ``appendfsync always`` pays per write;
- ``process`` and ``process-durable``: a worker's files per job, in ``processes`` processes
  at once (each jobq worker is a process), see ``floor_process``.

    python benchmarks/floors.py [--dir /var/tmp] [--jobs 20000] [--processes 2]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import sys
import tempfile
import time
import traceback
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from collections.abc import Callable

# A job file of jobq's format 1 for this job is about 200 bytes; the floors write as much.
PAYLOAD = b'{"format":1,"id":"1a22e29c3b4fd1eb7d043","name":"public_jobq.print_time",' + b"x" * 130
# A done record of that job is about as long.
RECORD = b'{"format":1,"state":"done","id":"1a22e29c3b4fd1eb7d043","result":null,' + b"x" * 130
#: Records per group commit in the durable processing floor: about what a durable jobq worker
#: gathers on these disks (docs/performance.md).
GROUP = 40


def floor_rename(
    base: str, n: int, durable: bool, journaled: bool = False, synced_after: bool = False
) -> float:
    """Jobs/s of O_EXCL create + write + close + rename ``tmp/`` -> ``pending/``, one at a time.

    ``durable`` adds an fsync of the file before the rename and of ``pending/`` after it;
    ``journaled`` instead appends the job's bytes to a journal and fdatasyncs it after the
    rename (a durable enqueue on a filesystem that keeps metadata in order); ``synced_after``
    fsyncs the file after its rename (a durable enqueue on ext4 without a journal).
    """
    tmp, pending = os.path.join(base, "tmp"), os.path.join(base, "pending")
    os.makedirs(tmp)
    os.makedirs(pending)
    directory = os.open(pending, os.O_RDONLY | os.O_DIRECTORY)
    journal = os.open(os.path.join(base, "journal"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        begin = time.perf_counter()
        for number in range(n):
            name = f"{number:012d}.json"
            source = os.path.join(tmp, name)
            fd = os.open(source, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, PAYLOAD)
                if durable:
                    os.fsync(fd)
                if synced_after:
                    os.rename(source, os.path.join(pending, name))
                    os.fsync(fd)
            finally:
                os.close(fd)
            if not synced_after:
                os.rename(source, os.path.join(pending, name))
            if durable:
                os.fsync(directory)
            if journaled:
                os.write(journal, PAYLOAD + b"\n")
                os.fdatasync(journal)
        return n / (time.perf_counter() - begin)
    finally:
        os.close(directory)
        os.close(journal)


def floor_append(path: str, n: int) -> float:
    """Writes/s of appending one line to one file with an fdatasync after each."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        begin = time.perf_counter()
        for _ in range(n):
            os.write(fd, PAYLOAD + b"\n")
            os.fdatasync(fd)
        return n / (time.perf_counter() - begin)
    finally:
        os.close(fd)


def floor_process(base: str, n: int, processes: int, durable: bool) -> tuple[float, float]:
    """Jobs/s, and CPU µs per job, of a worker's file operations, ``processes`` at once.

    ``n`` job files wait in ``pending/``; each process takes its own share of them (no lost
    races) and, per job, does what a jobq worker's claim and commit do (``jobq.spool``):

    - the claim: rename ``pending/ID`` -> ``running/PROCESS/ID``;
    - the read: open, fstat, read, close;
    - the job's output: one line written to a shared output file (the job's ``print``);
    - the record: O_EXCL create in ``tmp/``, fstat, write, close;
    - the commit: stat and rename of the job file to its fence name beside it, the record's
      rename to ``done/ID`` (a free name), and once the group's records are in place the
      removal of the fence file.

    Durable, records are written in groups of ``GROUP``: one ``syncfs`` after the group's
    records, then the renames, then one fsync of ``done/``, then the fence files' removal, as
    a group commit does on Linux.
    What is not here: the event loop, listing ``pending/``, the JSON, the log line, start-up.
    So this is an upper bound for a jobq worker on this disk, not a target. The CPU time is
    the processes' user + system time (the kernel's own threads, such as writeback, are not
    in it).
    """
    pending, done, tmp = (os.path.join(base, d) for d in ("pending", "done", "tmp"))
    for directory in (pending, done, tmp):
        os.makedirs(directory)
    names = [f"{number:012d}.json" for number in range(n)]
    for name in names:
        fd = os.open(os.path.join(pending, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, PAYLOAD)
        os.close(fd)
    os.sync()  # the pending files' writeback is the enqueue's cost, not the workers'
    syncfs = ctypes.CDLL(None, use_errno=True).syncfs  # loaded before forking
    output = os.open(os.path.join(base, "output"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    go_read, go_write = os.pipe()
    children = []
    try:
        for number in range(processes):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                _child(number, names[number::processes], base, output, go_read, go_write,
                       durable, syncfs)  # fmt: skip
            children.append(pid)
    finally:
        os.close(go_read)
    begin = time.perf_counter()
    os.close(go_write)  # every child starts at once
    failed, cpu = 0, 0.0
    for pid in children:  # every child waited for, even after one failed
        _, status, usage = os.wait4(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
        cpu += usage.ru_utime + usage.ru_stime
    took = time.perf_counter() - begin
    os.close(output)
    if failed:
        raise SystemExit(f"{failed} of the processing floor's processes failed (see above)")
    return n / took, cpu / n * 1e6


def _child(
    number: int,
    names: list[str],
    base: str,
    output: int,
    go_read: int,
    go_write: int,
    durable: bool,
    syncfs: Callable[[int], int],
) -> NoReturn:  # pragma: no cover - runs in a forked child
    """A floor process: wait for the start, do its jobs, exit 0 (1 after printing an error)."""
    code = 1
    try:
        os.close(go_write)
        os.read(go_read, 1)
        running = os.path.join(base, f"running-{number}")
        os.mkdir(running)
        _work(names, os.path.join(base, "pending"), running, os.path.join(base, "tmp"),
              os.path.join(base, "done"), output, durable, syncfs)  # fmt: skip
        code = 0
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _work(
    names: list[str],
    pending: str,
    running: str,
    tmp: str,
    done: str,
    output: int,
    durable: bool,
    syncfs: Callable[[int], int],
) -> None:
    """One floor process's jobs (see ``floor_process``)."""
    group = GROUP if durable else 1
    for first in range(0, len(names), group):
        claimed = []
        for name in names[first : first + group]:
            held = os.path.join(running, name)
            os.rename(os.path.join(pending, name), held)
            fd = os.open(held, os.O_RDONLY)
            size = os.fstat(fd).st_size
            os.read(fd, size + 1)
            os.close(fd)
            os.write(output, f"finished {time.time():.6f}\n".encode())
            record = os.path.join(tmp, name + ".rec")
            fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.fstat(fd)
            os.write(fd, RECORD)
            os.close(fd)
            claimed.append((name, held, record))
        if durable:
            anchor = os.open(tmp, os.O_RDONLY)
            try:
                if syncfs(anchor) != 0:
                    raise OSError(ctypes.get_errno(), "syncfs")
            finally:
                os.close(anchor)
        fences = []
        for name, held, record in claimed:
            fence = held + ".fence"
            os.stat(held)
            os.rename(held, fence)
            os.rename(record, os.path.join(done, name))
            fences.append(fence)
        if durable:
            directory = os.open(done, os.O_RDONLY | os.O_DIRECTORY)
            os.fsync(directory)
            os.close(directory)
        for fence in fences:
            os.unlink(fence)


def main() -> None:
    """Print each floor once, on ``--dir``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default="/var/tmp", help="where the files go (the disk measured)")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="floors-", dir=args.dir)
    try:
        rename = floor_rename(os.path.join(work, "a"), args.jobs, durable=False)
        print(f"rename: {rename:,.0f}/s ({1e6 / rename:,.1f} µs each)")
        for durable in (False, True):
            where = os.path.join(work, f"process-{durable}")
            rate, cpu = floor_process(where, args.jobs, args.processes, durable)
            name = "process-durable" if durable else "process"
            print(f"{name}: {rate:,.0f} jobs/s, {cpu:,.1f} CPU µs a job")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
