"""Starting workers: one in this process, or ``--processes N`` children under a supervisor.

The supervisor starts N children (``python -m jobq worker ...`` without ``--processes``), each
in a process group of its own, and:

- tags each line a child writes to stderr with a ``[child N]`` prefix (a JSON log line gets a
  ``"child": N`` key instead), so the journal says which child wrote what: a child's log lines
  go straight to the supervisor's stderr, tagged by the child (``child_log_stream``); the
  rest of its stderr is relayed here line by line;
- stops at once with exit code 2 when a child cannot start (its app does not import, trio is
  missing, a bad option): the child reports that with the private exit code ``EXIT_STARTUP``
  and its one-line ``jobq: ...`` error, which the supervisor prints as its own last line;
- restarts a child that dies unexpectedly after a back-off that doubles from 0.5 s to 30 s
  while it keeps dying, and starts again from 0.5 s once a child lived ``STABLE_AFTER``
  seconds; every restart is logged with the exit code and the delay;
- forwards SIGTERM/SIGINT to every child and exits once they all have: 0 after a graceful stop
  (whatever crashed before it), 1 after a second signal (a hard stop);
- in burst mode, exits once every child ran out of work (the worst exit code of their last
  runs).

Failure story: the supervisor holds no job state. If it is killed with SIGKILL its children keep
running (they are in their own process groups) until they are stopped; a child's jobs never
depend on the supervisor, only on the child's lease.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from jobq.errors import ConfigurationError
from jobq.logs import tagged
from jobq.registry import import_apps

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

    from jobq.spool import SpoolDir

__all__ = ("EXIT_STARTUP", "run_worker", "supervise")

logger = logging.getLogger("jobq.supervisor")

#: Exit code of a supervised child that could not start; the supervisor then exits 2.
EXIT_STARTUP = 3
#: Environment variable that tells a worker it is child number N of a supervisor.
CHILD_ENV = "JOBQ_SUPERVISED_CHILD"
#: Environment variable that hands a child the supervisor's stderr for its log lines:
#: ``FD:DEVICE:INODE`` (the child checks that the descriptor is still that file).
LOG_FD_ENV = "JOBQ_LOG_FD"
#: The first restart delay of a child that died; it doubles up to ``MAX_DELAY``.
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
#: A child that lived this long was healthy: its next restart starts over at ``FIRST_DELAY``.
STABLE_AFTER = 60.0
#: After a child could not start, how long the others get to stop before they are killed.
FATAL_WAIT = 5.0
#: How often the supervisor looks at its children.
TICK = 0.05


def run_worker(
    spool: SpoolDir,
    apps: Sequence[str],
    queues: list[str] | None,
    concurrency: int,
    backend: str,
    burst: bool,
    lease: float,
    grace: float,
    unknown_grace: float = 300.0,
    result_ttl: float | None = None,
) -> int:
    """Import ``apps`` and run one worker in this process; returns the exit code.

    Under a supervisor, a start-up failure is printed as one ``jobq:`` line and returned as
    ``EXIT_STARTUP`` rather than raised.

    Raises:
        ConfigurationError: if an app cannot be imported, the backend is not installed or a
            setting is invalid (not under a supervisor).
    """
    import anyio

    from jobq.worker import Worker

    try:
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
            unknown_grace=unknown_grace,
            result_ttl=result_ttl,
        )
    except ConfigurationError as exc:
        if CHILD_ENV not in os.environ:
            raise
        print(f"jobq: {exc}", file=sys.stderr, flush=True)
        return EXIT_STARTUP
    from jobq.inspect import is_spool

    new = "" if is_spool(spool) else "; no spool was there: creating a new one"
    logger.info(
        "worker %s serving %s on %s (%s)%s",
        worker.id, ",".join(worker.queues), spool.root, backend, new,
    )  # fmt: skip
    anyio.run(lambda: worker.run(burst=burst), backend=backend)
    return 1 if worker.hard_stopped else 0


def child_log_stream() -> tuple[int, IO[str]] | None:
    """For a supervised child: its number, and a stream to the supervisor's stderr; else None.

    A child writes its log lines there itself (``jobq.logs.ChildHandler`` tags them) rather
    than through the supervisor's relay: a line per job through a pipe, a thread and a second
    write cost a quarter of the throughput of short jobs (docs/performance.md). The hand-over
    is removed from the environment and the descriptor made close-on-exec, so that processes
    a job starts neither learn of it nor hold the supervisor's stderr open.
    """
    handed = os.environ.pop(LOG_FD_ENV, None)
    number = os.environ.get(CHILD_ENV)
    if handed is None or number is None:
        return None
    try:
        fd, device, inode = (int(part) for part in handed.split(":"))
        found = os.fstat(fd)
        if (found.st_dev, found.st_ino) != (device, inode):
            return None
        os.set_inheritable(fd, False)
        return int(number), os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace")
    except (ValueError, OSError):  # not ours to use: log through the relay
        return None


def _stderr_for_children() -> tuple[int, str] | None:
    """A descriptor of our stderr for the children's log lines, and its ``LOG_FD_ENV`` value."""
    try:
        # Above 2: with stdin or stdout closed, a plain dup could take their number.
        fd = fcntl.fcntl(sys.stderr.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
    except (AttributeError, ValueError, OSError):  # no real stderr: the relay does it all
        return None
    found = os.fstat(fd)
    return fd, f"{fd}:{found.st_dev}:{found.st_ino}"


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

    Returns:
        0 after a graceful stop or a finished burst, 1 after a hard stop (second signal) or
        when a burst child failed, 2 when a child could not start.
    """
    return _Supervisor(processes, _child_argv(argv), burst="--burst" in argv).run()


@dataclass(eq=False)
class _Process:
    """One run of a child: the process, the thread relaying its stderr, its last words."""

    proc: subprocess.Popen[bytes]
    started: float  # time.monotonic()
    relay: threading.Thread | None = None
    error: str | None = None  # its `jobq: ...` line, if that was the last thing it said


@dataclass(eq=False)
class _Child:
    """One child slot: the process running in it, if any, and its restart back-off."""

    number: int
    run: _Process | None = None
    delay: float = FIRST_DELAY  # back-off before the next restart
    restart_at: float | None = None  # time.monotonic() of a pending restart
    last_code: int = 0  # exit code of its last process (burst mode)
    done: bool = False  # no process now and none to come


class _Supervisor:
    """The children of one ``jobq worker --processes N`` and what happens when they exit."""

    def __init__(self, processes: int, command: list[str], *, burst: bool) -> None:
        self.command = command
        self.burst = burst
        self.children = [_Child(n) for n in range(1, processes + 1)]
        self.signals = 0
        self._received: list[int] = []  # signals not yet acted on (see _forward)
        self.fatal: str | None = None  # the error of a child that could not start
        self.fatal_at = 0.0
        self.stop_code = 0  # worst exit of the children that ended after a stop
        self._write = threading.Lock()
        self._log_fd = _stderr_for_children()

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Start the children and watch them until all are done; the exit code."""
        previous = {s: signal.signal(s, self._receive) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            logger.info("supervising %d worker processes", len(self.children))
            for child in self.children:
                self._spawn(child)
            while not all(child.done for child in self.children):
                self._forward()
                for child in self.children:
                    self._look_at(child)
                if self.fatal is not None and time.monotonic() - self.fatal_at > FATAL_WAIT:
                    break
                time.sleep(TICK)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            for child in self.children:
                if child.run is not None and child.run.proc.poll() is None:
                    child.run.proc.kill()
                    child.run.proc.wait()
            if self._log_fd is not None:
                os.close(self._log_fd[0])
        return self._exit_code()

    def _exit_code(self) -> int:
        if self.fatal is not None:
            self._print(f"jobq: {self.fatal.removeprefix('jobq: ')}")
            return 2
        if self.signals >= 2:
            return 1
        if self.signals:
            return self.stop_code
        return max((c.last_code for c in self.children), default=0)

    def _receive(self, signum: int, _frame: FrameType | None) -> None:
        # Only note it: the loop acts on it between two looks at the children.
        self._received.append(signum)

    def _forward(self) -> None:
        """Pass the signals received since the last tick on to every running child."""
        while self._received:
            signum = self._received.pop(0)
            self.signals += 1
            if self.signals == 1:
                logger.info("%s: stopping the worker processes", signal.Signals(signum).name)
            else:
                logger.warning("second signal: the worker processes stop now")
            self._signal_all(signum)

    def _signal_all(self, signum: int) -> None:
        for child in self.children:
            child.restart_at = None
            if child.run is None:
                child.done = True
            elif child.run.proc.poll() is None:
                child.run.proc.send_signal(signum)

    # -- one child -------------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        env = {**os.environ, CHILD_ENV: str(child.number)}
        passed: tuple[int, ...] = ()
        if self._log_fd is not None:
            passed, env[LOG_FD_ENV] = (self._log_fd[0],), self._log_fd[1]
        proc = subprocess.Popen(
            self.command, env=env, stderr=subprocess.PIPE, process_group=0, pass_fds=passed
        )
        run = child.run = _Process(proc, time.monotonic())
        child.restart_at = None
        assert proc.stderr is not None
        run.relay = threading.Thread(
            target=self._relay, args=(child.number, run, proc.stderr), daemon=True
        )  # a daemon: a grandchild that holds the pipe open must not keep the supervisor alive
        run.relay.start()
        logger.info("child %d started (pid %d)", child.number, proc.pid)

    def _look_at(self, child: _Child) -> None:
        if child.done:
            return
        run = child.run
        if run is None:
            if child.restart_at is not None and time.monotonic() >= child.restart_at:
                self._spawn(child)
            return
        code = run.proc.poll()
        if code is None:
            return
        lived = time.monotonic() - run.started
        if run.relay is not None:
            run.relay.join(timeout=2.0)  # its last lines, and its error line
        child.run = None
        child.last_code = code if code >= 0 else 1
        if code == EXIT_STARTUP and not self.signals:
            self._cannot_start(child, run)
        elif self.signals or self.fatal is not None:
            self._stopped(child, run, code)
        elif self.burst and code == 0:
            child.done = True
            if run.error is not None:
                self._print(tagged(run.error, child.number))
        else:
            self._crashed(child, run, code, lived)

    def _cannot_start(self, child: _Child, run: _Process) -> None:
        child.done = True
        if self.fatal is not None:
            return
        self.fatal = run.error or f"worker process {child.number} could not start"
        self.fatal_at = time.monotonic()
        logger.error("child %d could not start: stopping the others", child.number)
        self._signal_all(signal.SIGTERM)

    def _stopped(self, child: _Child, run: _Process, code: int) -> None:
        child.done = True
        if run.error is not None and run.error != self.fatal:
            self._print(tagged(run.error, child.number))
        # A child that died of the very signal we forwarded (before it installed its own
        # handlers, say while importing its app) stopped as asked.
        if code not in (0, -signal.SIGTERM, -signal.SIGINT, EXIT_STARTUP):
            self.stop_code = max(self.stop_code, 1)

    def _crashed(self, child: _Child, run: _Process, code: int, lived: float) -> None:
        if lived >= STABLE_AFTER:
            child.delay = FIRST_DELAY
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        said = f" ({run.error.removeprefix('jobq: ')})" if run.error else ""
        logger.warning(
            "child %d (pid %d) %s after %.1f s%s; restarting it in %g s",
            child.number,
            run.proc.pid,
            how,
            lived,
            said,
            child.delay,
        )
        child.restart_at = time.monotonic() + child.delay
        child.delay = min(child.delay * 2, MAX_DELAY)

    # -- output ----------------------------------------------------------------------------

    def _relay(self, number: int, run: _Process, stream: IO[bytes]) -> None:
        """Copy a child's stderr to ours, tagged; hold back its ``jobq:`` error line.

        A ``jobq: ...`` line is how a child says why it exits. It is held until the next line
        (then it was not the last word and is relayed as usual) or the end of the stream, when
        the supervisor decides what to say with it (see ``_look_at``).
        """
        held: str | None = None
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\n")
                if held is not None:
                    self._print(tagged(held, number))
                    held = None
                if line.startswith("jobq: "):
                    held = line
                else:
                    self._print(tagged(line, number))
        run.error = held

    def _print(self, line: str) -> None:
        with self._write:
            try:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
            except (OSError, ValueError):  # our stderr is gone: nothing else to tell it to
                pass
