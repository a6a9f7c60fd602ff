"""Limits: ``max_running=N`` (slots) and ``rate_limit="N/m"`` (start tokens), spool-wide.

Both are files under ``limits/NAME/``, taken with ``O_EXCL`` (the spool's compare-and-swap),
so they hold across every worker and host of the spool:

- ``running/K`` (K < N) is a slot: it holds the owner's worker id and job id while an attempt
  runs, and is removed when the attempt ends.
- ``rate/K`` (K < N) is a start token: it holds the time of the start that used it, and may be
  used again one window later. So at most N starts fall in any window, sliding.

The worker takes what a job needs after claiming it and before starting it; when something
is missing the job goes back to ``pending/`` unchanged (no attempt counted, nothing failed)
and the worker leaves it alone until a slot may have freed or the window moves on, while
other jobs flow past it.

Failure story: a slot whose owner died stays taken until the owner's lease is reaped: the
reaper removes the registration, and the next worker that finds the slot full of an
unregistered owner takes it over (a rename that exactly one taker wins; the inode read with
the contents proves it is the same dead slot). Rate tokens need no cleanup: they expire. A
spool that refuses a slot or token (a full disk) holds the job back in ``pending/`` for a
second, uncounted, instead of failing it or stopping the worker.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jobq import layout as L
from jobq.errors import ConfigurationError
from jobq.registry import lookup
from jobq.spool.files import DIR_MODE, FILE_MODE

if TYPE_CHECKING:
    from jobq.holdback import HoldBack
    from jobq.model import Job
    from jobq.registry import JobSpec
    from jobq.spool import Claimed, SpoolDir

__all__ = ("Limits", "RateLimit", "check_max_running")

logger = logging.getLogger("jobq.worker")

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*([smh])\s*")

#: A rate token is reused a little after its window, so that the time between taking a token
#: and the job's first line cannot squeeze one start too many into a window.
RATE_MARGIN = 0.05

#: How long a worker leaves a job held back by ``max_running`` before it looks again (a slot
#: freed on another host has no other way to tell it).
SLOT_RECHECK = 0.25
#: How long it leaves a limited job when the spool refused its slot or token (a full disk).
SPOOL_RECHECK = 1.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` starts in any ``period`` seconds.

    Attributes:
        count: starts allowed per window.
        period: the window in seconds (1, 60 or 3600).
    """

    count: int
    period: float

    @classmethod
    def parse(cls, text: object) -> RateLimit | None:
        """Parse ``"N/s"``, ``"N/m"`` or ``"N/h"``; None for None.

        Raises:
            ConfigurationError: if ``text`` is not of that form or N is 0.
        """
        if text is None:
            return None
        match = _RATE.fullmatch(text) if isinstance(text, str) else None
        if match is None or int(match.group(1)) < 1:
            raise ConfigurationError(
                f'rate_limit must look like "30/m" ("N/s", "N/m" or "N/h", N >= 1), got {text!r}'
            )
        return cls(int(match.group(1)), _PERIODS[match.group(2)])

    def describe(self) -> str:
        """The limit as written: ``30/m``."""
        unit = {v: k for k, v in _PERIODS.items()}[self.period]
        return f"{self.count}/{unit}"


def check_max_running(value: object) -> int | None:
    """Check ``max_running=``: None or an integer >= 1.

    Raises:
        ConfigurationError: otherwise.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"max_running must be an integer >= 1, got {value!r}")
    return value


class Limits:
    """Takes and gives back the slots and start tokens of limited jobs for one worker.

    Args:
        spool: the spool.
        holdback: where the jobs that must wait are put back (shared with the worker).
    """

    def __init__(self, spool: SpoolDir, holdback: HoldBack) -> None:
        self.spool = spool
        self.holdback = holdback
        self._held: dict[str, str] = {}  # job id -> slot path this worker holds for it
        self._inodes: dict[str, int] = {}  # slot path -> inode of the file we created
        self._tokens: dict[str, str] = {}  # job id -> start token taken for it, not stamped
        self._dirs: set[str] = set()  # limit directories known to exist
        self._unreleased: list[tuple[str, int | None]] = []  # slots a spool error kept

    def admit(self, job: Job, held: Claimed, worker_id: str) -> bool:
        """Take what a claimed job needs to start; if missing, hold it back in pending.

        Returns:
            True if the job may start now. False if it went back to ``pending/`` unchanged
            (its start not counted) to wait for a slot or a token.
        """
        spec = lookup(job.name)
        if spec is None or (spec.max_running is None and spec.rate_limit is None):
            return True
        try:
            missing = self.acquire(spec, worker_id, job.id)
        except OSError as exc:  # a full disk, say: the job waits, the worker goes on
            logger.warning("job %s (%s): cannot take its limit (%s); trying again soon",
                           job.name, job.id, exc)  # fmt: skip
            self.release(job.id)
            missing = (time.monotonic() + SPOOL_RECHECK, "slot")
        if missing is None:
            return True
        self.holdback.put_back(held, *missing)
        return False

    def finished(self, job_id: str) -> None:
        """An attempt ended: give back its slot, and look at jobs waiting for one again."""
        if job_id in self._held:
            self.release(job_id)
            self.holdback.look_again("slot")

    # -- taking and giving back ------------------------------------------------------------

    def acquire(self, spec: JobSpec, worker_id: str, job_id: str) -> tuple[float, str] | None:
        """Take what one start of ``spec`` needs.

        The slot comes first: a start token is only spent on a job that will start.

        Returns:
            None if the job may start now, else the ``time.monotonic()`` at which to look
            again and what is missing (``slot`` or ``token``).
        """
        if spec.max_running is not None:
            slot = self._take_slot(spec.name, spec.max_running, worker_id, job_id)
            if slot is None:
                return time.monotonic() + SLOT_RECHECK, "slot"
            self._held[job_id] = slot
        if spec.rate_limit is not None:
            token = self._take_token(spec.name, spec.rate_limit)
            if not isinstance(token, str):
                self.release(job_id)
                return time.monotonic() + token, "token"
            self._tokens[job_id] = token
        return None

    def release(self, job_id: str) -> None:
        """Give back the slot held for ``job_id``, if any (the attempt ended)."""
        slot = self._held.pop(job_id, None)
        if slot is not None:
            self._unreleased.append((slot, self._inodes.pop(slot, None)))
        while self._unreleased:
            slot, ino = self._unreleased[-1]
            try:
                with contextlib.suppress(FileNotFoundError):
                    # Only our own file: after a lost lease a new owner may hold this slot now.
                    if ino is None or os.stat(slot).st_ino == ino:
                        os.unlink(slot)
            except OSError as exc:  # the spool is away: the next release tries again
                logger.warning("cannot give back a slot of %s yet: %s", slot, exc)
                return
            self._unreleased.pop()

    # -- slots -----------------------------------------------------------------------------

    def _dir(self, name: str, kind: str) -> str:
        directory = self.spool.path(L.LIMITS, name, kind)
        if directory not in self._dirs:
            self.spool.ensure()
            os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
            self._dirs.add(directory)
        return directory

    def _take_slot(self, name: str, count: int, worker_id: str, job_id: str) -> str | None:
        directory = self._dir(name, "running")
        data = f"{worker_id}\n{job_id}\n".encode()
        for k in range(count):
            path = os.path.join(directory, str(k))
            ino = _create(path, data)
            if ino is None and self._owner_gone(path):
                ino = _create(path, data)
            if ino is not None:
                self._inodes[path] = ino
                return path
        return None

    def _owner_gone(self, path: str) -> bool:
        """Take over a slot whose owner is no longer registered; True if it was freed."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            ino = os.fstat(fd).st_ino
            owner = os.read(fd, 4096).decode(errors="replace").split("\n", 1)[0]
        finally:
            os.close(fd)
        if not owner or os.path.exists(self.spool.worker_file(owner)):
            return False
        return _take_away(self.spool, path, ino)

    # -- rate tokens -----------------------------------------------------------------------

    def _take_token(self, name: str, limit: RateLimit) -> str | float:
        """Use one start token: its path if one was free, else seconds until one frees."""
        directory = self._dir(name, "rate")
        now = time.time()
        data = repr(now).encode()
        soonest = math.inf
        for k in range(limit.count):
            path = os.path.join(directory, str(k))
            if _create(path, data) is not None:
                return path
            used, ino = _read_time(path)
            if ino is None:  # another worker is replacing it right now: try to be first
                if _create(path, data) is not None:
                    return path
                continue
            free_at = used + limit.period * (1 + RATE_MARGIN)
            if free_at <= now and _take_away(self.spool, path, ino):
                if _create(path, data) is not None:
                    return path
                continue  # another worker took the freed token first
            soonest = min(soonest, free_at - now)
        return max(0.001, soonest if math.isfinite(soonest) else limit.period)

    def started(self, job_id: str) -> None:
        """The job's first line runs now: stamp its start token with this moment.

        The token was taken a little earlier (at claim time); a window counted from the
        real start keeps the starts that a job's own code sees within the limit. Called in
        the job's thread for a sync job, so it must stay cheap and never raise.
        """
        token = self._tokens.pop(job_id, None)
        if token is None:
            return
        with contextlib.suppress(OSError):
            fd = os.open(token, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, repr(time.time()).encode())
            finally:
                os.close(fd)


def _create(path: str, data: bytes) -> int | None:
    """Create ``path`` exclusively with ``data``; its inode, or None if it exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return None
    try:
        os.write(fd, data)
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def _read_time(path: str) -> tuple[float, int | None]:
    """The time a rate token holds and its inode; a token being written counts as now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0.0, None
    try:
        ino = os.fstat(fd).st_ino
        text = os.read(fd, 64).decode(errors="replace")
    finally:
        os.close(fd)
    try:
        return float(text), ino
    except ValueError:
        return time.time(), ino  # empty: its creator is writing it this very moment


def _take_away(spool: SpoolDir, path: str, ino: int | None) -> bool:
    """Remove the file at ``path`` if it is still the one with inode ``ino``.

    A rename into ``tmp/`` is the compare-and-swap: of several takers exactly one moves the
    file. If what moved is not the file we judged (it was replaced meanwhile), it goes back.
    """
    hold = spool.path(L.TMP, f"limit.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        os.rename(path, hold)
    except FileNotFoundError:
        return True  # someone else removed it: free either way
    try:
        if ino is None or os.stat(hold).st_ino == ino:
            return True
        with contextlib.suppress(FileExistsError):
            os.link(hold, path)  # a live file taken by mistake: put it back
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(hold)
