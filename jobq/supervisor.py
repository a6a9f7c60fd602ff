"""Starting workers: one in this process, or ``--processes N`` children under a supervisor.

The supervisor restarts a child that dies unexpectedly, forwards SIGTERM/SIGINT to every
child, and exits once all children have exited (in burst mode, when each ran out of work).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import anyio

from jobq.errors import ConfigurationError
from jobq.registry import import_apps

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

    from jobq.spool import SpoolDir

__all__ = ("run_worker", "supervise")

logger = logging.getLogger("jobq.supervisor")


def run_worker(
    spool: SpoolDir,
    apps: Sequence[str],
    queues: list[str] | None,
    concurrency: int,
    backend: str,
    burst: bool,
    lease: float,
    grace: float,
) -> int:
    """Import ``apps`` and run one worker in this process; returns the exit code.

    Raises:
        ConfigurationError: if an app cannot be imported or the backend is not installed.
    """
    from jobq.worker import Worker

    import_apps(apps)
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "--backend trio needs trio: pip install 'jobq[trio]'"
            ) from None
    worker = Worker(
        spool.root,
        queues=queues,
        concurrency=concurrency,
        lease=lease,
        grace=grace,
        durable=spool.durable,
        handle_signals=True,
    )
    logger.info(
        "worker %s serving %s on %s (%s)", worker.id, ",".join(worker.queues), spool.root, backend
    )
    anyio.run(lambda: worker.run(burst=burst), backend=backend)
    return 1 if worker.hard_stopped else 0


def _child_argv(argv: Sequence[str]) -> list[str]:
    """The worker command line without ``--processes``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        out.append(arg)
    return [sys.executable, "-m", "jobq", *out]


def supervise(processes: int, argv: Sequence[str]) -> int:
    """Run ``processes`` worker children with the same arguments; returns the exit code.

    Each child gets its own process group, so a terminal's Ctrl-C (sent to the whole
    foreground group) reaches the children once, through the supervisor, and is not taken
    for a second, immediate-stop signal.
    """
    command = _child_argv(argv)
    burst = "--burst" in argv
    children: dict[int, subprocess.Popen[bytes]] = {}
    stopping = {"signals": 0}

    def forward(signum: int, _frame: FrameType | None) -> None:
        stopping["signals"] += 1
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(processes):
            child = subprocess.Popen(command, process_group=0)
            children[child.pid] = child
        worst = 0
        while children:
            time.sleep(0.1)
            for pid, child in list(children.items()):
                code = child.poll()
                if code is None:
                    continue
                del children[pid]
                worst = max(worst, code if code >= 0 else 1)
                if not stopping["signals"] and not (burst and code == 0):
                    logger.warning("worker process %d exited with %d; starting another", pid, code)
                    replacement = subprocess.Popen(command, process_group=0)
                    children[replacement.pid] = replacement
        return worst if stopping["signals"] < 2 else 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for child in children.values():
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
