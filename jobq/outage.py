"""Spool outages: what a worker does while its filesystem does not answer.

A network filesystem goes away for a while (a partition, a server restart): calls fail with
ENOTCONN, EIO or ESTALE, or hang until the client gives up. A worker must not die of it, nor
spin on it. While the spool is down the worker stops claiming, retries with a back-off, keeps
its identity, and logs the two transitions (down, back) once each. Its jobs are safe either
way: if the outage outlasts the lease, other workers take them over (see ``jobq.lease``) and
the rename fence discards whatever this worker records late.

``Outage`` is that state, shared by the claim loop, the committer and the chores: whichever
meets the error first logs it; whichever succeeds first logs the recovery.
"""

from __future__ import annotations

import errno
import logging
import random
import time

__all__ = ("Outage", "is_unreachable")

logger = logging.getLogger("jobq.worker")

#: Errors that mean "the filesystem is not answering" rather than "this request is wrong":
#: network filesystems report a lost server with these.
UNREACHABLE = frozenset(
    {
        errno.ENOTCONN,
        errno.EIO,
        errno.ESTALE,
        errno.ETIMEDOUT,
        errno.ECONNABORTED,
        errno.ECONNRESET,
        errno.ECONNREFUSED,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.ENOLINK,
        errno.EREMOTEIO,
    }
)

#: Back-off between retries while down: from ``FIRST_DELAY`` doubling to ``MAX_DELAY``.
FIRST_DELAY = 0.1
MAX_DELAY = 2.0


def is_unreachable(exc: OSError) -> bool:
    """Whether ``exc`` says the filesystem is away (retry later), not that a request is bad."""
    return exc.errno in UNREACHABLE


class Outage:
    """Whether this worker's spool is answering, with the back-off while it is not.

    Attributes:
        since: ``time.monotonic()`` when the current outage began; None while up.
        strays: an operation failed halfway since the last sweep, so the worker's running
            directory may hold jobs it no longer tracks (see ``Claimer``'s stray sweep).
    """

    def __init__(self) -> None:
        self.since: float | None = None
        self.strays = False
        self._delay = FIRST_DELAY

    def failed(self, what: str, exc: OSError) -> None:
        """An operation failed: log the outage if it is new; later failures stay quiet."""
        self.strays = True
        if self.since is not None:
            return
        self.since = time.monotonic()
        logger.error(
            "spool unreachable (%s: %s); not claiming until it answers", what, _describe(exc)
        )

    def recovered(self, began: float) -> None:
        """An operation that began at ``began`` (``time.monotonic()``) succeeded: log the end
        of the outage, if there was one.

        An operation that began before the outage did says nothing about the spool now: a
        claim scan in a thread may finish well after a commit beside it failed.
        """
        if self.since is not None and began < self.since:
            return
        self._delay = FIRST_DELAY
        if self.since is None:
            return
        logger.warning(
            "spool reachable again after %.1f s; claiming resumes", time.monotonic() - self.since
        )
        self.since = None

    def next_delay(self) -> float:
        """Seconds to wait before the next retry: doubling, capped, with jitter.

        The jitter keeps the workers of many hosts from retrying in step when a shared
        filesystem comes back.
        """
        delay = self._delay
        self._delay = min(MAX_DELAY, self._delay * 2)
        return delay * random.uniform(0.75, 1.25)


def _describe(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason
