"""Leases: a worker's registration and heartbeat, and the reaper that takes back a dead
worker's jobs.

The heartbeat runs in its own OS thread so that it keeps going while a sync job blocks a
thread or an async job hogs the event loop. The reaper judges a lease by the spool's own
clock (the mtime of a probe file), so hosts with skewed local clocks agree on who is dead.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
import traceback

from jobq import layout as L
from jobq.errors import SpoolError
from jobq.model import CorruptJob, Outcome, encode_record
from jobq.spool import Claimed, Finish, SpoolDir

__all__ = (
    "DEFAULT_LEASE",
    "LOST_ALLOWANCE",
    "Heartbeat",
    "Registration",
    "lease_of",
    "reap_expired",
    "reap_worker",
    "requeue_held",
)

logger = logging.getLogger("jobq.worker")

#: The lease assumed for a worker whose lease is unknown, when the reaper has none of its own.
DEFAULT_LEASE = 30.0

#: Starts lost with a dead worker that a job may use beyond its retries before it is declared
#: poison (it may be what kills the workers) and moved to ``failed``.
LOST_ALLOWANCE = 2


class Heartbeat(threading.Thread):
    """Touches the worker's registration every ``lease / 4`` seconds.

    ``lost`` becomes set when the registration is gone (a reaper took the worker's jobs) or
    no heartbeat succeeded for about a lease; the worker must then stop its jobs.
    """

    def __init__(self, spool: SpoolDir, worker_id: str, lease: float) -> None:
        super().__init__(name=f"jobq-heartbeat-{worker_id}", daemon=True)
        self.spool = spool
        self.worker_id = worker_id
        self.lease = lease
        self.interval = max(0.02, lease / 4)
        self.lost = threading.Event()
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Heartbeat until stopped or lost."""
        last_ok = time.monotonic()
        while not self._stop_event.wait(self.interval):
            now = time.monotonic()
            try:
                alive = renewed = self.spool.heartbeat(self.worker_id)
            except OSError:
                alive, renewed = True, False  # transient: judged by how long it lasts
            # Most of a lease without a renewal (frozen by SIGSTOP or a VM pause, or renewals
            # failing): a reaper may be taking the jobs right now, so they are no longer ours.
            if not alive or now - last_ok > self.lease * 0.8:
                self.lost.set()
                return
            if renewed:
                last_ok = now

    def stop(self) -> None:
        """Stop heartbeating (the worker is leaving)."""
        self._stop_event.set()


def new_worker_id() -> str:
    """A fresh worker id, ``host.pid.random`` (docs/spool-format.md)."""
    host = "".join(c if c.isalnum() or c in "_-" else "-" for c in socket.gethostname())[:40]
    return f"{host or 'host'}.{os.getpid()}.{secrets.token_hex(3)}"


class Registration:
    """A worker's identity in the spool: its registration, its heartbeat, its lost leases.

    Args:
        spool: the spool.
        lease: seconds a silent worker keeps its jobs.
        about: what the registration states besides id, host, pid, lease and start time
            (the queues served, the concurrency).
    """

    def __init__(self, spool: SpoolDir, lease: float, about: dict[str, object]) -> None:
        self.spool = spool
        self.lease = lease
        self.about = about
        #: The current id: claims go to ``running/ID/``.
        self.id = new_worker_id()
        self.heartbeat: Heartbeat | None = None
        #: Ids held before lost leases, whose jobs are still to be handed back.
        self.retired: list[str] = []
        #: The id taken at the next registration after a lost lease: chosen once per loss,
        #: so that failed attempts while the spool is down do not churn ids.
        self._successor: str | None = None

    def register(self) -> None:
        """Write the registration under the current id and start heartbeating.

        Raises:
            OSError: if the spool refused.
        """
        self._register(self.id)

    def register_anew(self) -> None:
        """Register under a new id (after a lost lease): new claims go to the new id.

        Raises:
            OSError: if the spool refused; the next call tries the same new id again.
        """
        if self._successor is None:
            self._successor = new_worker_id()
        self._register(self._successor)
        self._successor = None

    def _register(self, worker_id: str) -> None:
        info = {
            "id": worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **self.about,
            "lease": self.lease,
            "started_at": time.time(),
        }
        self.spool.register_worker(worker_id, info)
        self.id = worker_id
        self.heartbeat = Heartbeat(self.spool, worker_id, self.lease)
        self.heartbeat.start()

    @property
    def lost(self) -> bool:
        """Whether the current registration's lease is lost (its jobs are no longer ours)."""
        return self.heartbeat is not None and self.heartbeat.lost.is_set()

    def stop(self) -> None:
        """Stop heartbeating (the worker is leaving; its registration stays until removed)."""
        if self.heartbeat is not None:
            self.heartbeat.stop()


def requeue_held(spool: SpoolDir, held: Claimed, *, who: str) -> str:
    """Return one job of a dead or departing worker to its queue.

    A job whose outcome is already recorded is dropped; a job that has used its retries and
    ``LOST_ALLOWANCE`` more starts is recorded as ``failed``; otherwise it goes back to pending
    with its start count kept.

    A job file at its fence name is in a commit its worker did not finish: its outcome was
    decided, and ``settle_fence`` completes it instead.

    Returns:
        What happened: ``requeued``, ``failed``, ``dropped``, ``quarantined``,
        ``completed`` or ``gone``.
    """
    if L.is_fence_name(os.path.basename(held.path)):
        return spool.settle_fence(held)
    if spool.find_finished(held.job_id, [held.queue]) is not None:
        return "dropped" if spool.remove(held.path) else "gone"
    try:
        job = spool.read_job(held.path, held.job_id)
    except FileNotFoundError:
        return "gone"
    except CorruptJob as exc:
        spool.quarantine(held.path, f"corrupt job file: {exc}")
        return "quarantined"
    if job.may_retry(held.name.attempts - LOST_ALLOWANCE):
        return "requeued" if spool.requeue(held.path, held.queue, held.name) else "gone"
    message = (
        f"the job's worker died {held.name.attempts} times while running it (lease expired); "
        "giving up: the job may be what kills its workers"
    )
    outcome = Outcome(
        L.FAILED,
        held.name.attempts,
        None,
        time.time(),
        error={"type": "jobq.WorkerLost", "message": message, "traceback": message + "\n"},
        worker=who,
    )
    finish = Finish(held.path, held.queue, held.job_id, L.FAILED, encode_record(job, outcome))
    return "failed" if spool.commit([finish])[0] else "gone"


def reap_worker(
    spool: SpoolDir, worker_id: str, *, who: str, pid: int | None = None
) -> dict[str, int]:
    """Take back every job of ``worker_id`` and remove its registration.

    With the dead worker's ``pid``, also finish the commits it left halfway, so that an
    outcome it had already decided is complete at once.

    Safe when several reapers race: each move is a rename that exactly one of them wins.
    """
    counts: dict[str, int] = {}
    if pid is not None:
        try:
            if completed := spool.complete_commits(pid):
                counts["completed"] = completed
        except (SpoolError, OSError):
            logger.warning(
                "completing commits of %s failed: %s", worker_id, traceback.format_exc(limit=1)
            )
    for held in spool.running_jobs(worker_id):
        try:
            what = requeue_held(spool, held, who=who)
            if what in ("requeued", "failed") and pid is not None:
                # Its commit can no longer pass its fence: what it staged is stale.
                spool.drop_staged(held.queue, held.job_id, pid)
        except (SpoolError, OSError):
            logger.warning("reaping %s failed: %s", held.path, traceback.format_exc(limit=1))
            continue
        counts[what] = counts.get(what, 0) + 1
    spool.deregister_worker(worker_id)
    return counts


def lease_of(info: dict[str, object], estimate: float = DEFAULT_LEASE) -> float:
    """The lease a worker's registration states, or ``estimate`` if it states none.

    A registration that a power cut emptied states nothing (``spool.workers()`` lists it
    with ``{}``); its mtime is still its last heartbeat.
    """
    lease = info.get("lease")
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not lease > 0:
        return estimate
    return float(lease)


def reap_expired(spool: SpoolDir, own_id: str, lease: float | None = None) -> list[str]:
    """Reap every worker whose lease expired by the spool's clock; returns their ids.

    A worker whose lease is unknown is judged by ``lease``, the reaper's own: workers of one
    deployment mostly share ``--lease``, and the registrations or directories concerned are
    a dead worker's leftovers. That is a registration that is not JSON (emptied by a power
    cut) judged by its mtime, and a running directory without a registration (a worker that
    died while registering, or a reaper that died halfway) judged by its mtime.

    Args:
        spool: the spool.
        own_id: the reaper's worker id, never reaped.
        lease: the reaper's lease; default ``DEFAULT_LEASE``.
    """
    estimate = DEFAULT_LEASE if lease is None else lease
    now = spool.now()
    reaped = []
    registered = set()
    for worker_id, seen, info in spool.workers():
        registered.add(worker_id)
        if worker_id != own_id and now - seen > lease_of(info, estimate):
            pid = info.get("pid")
            pid = pid if isinstance(pid, int) else L.worker_pid(worker_id)
            counts = reap_worker(spool, worker_id, who=own_id, pid=pid)
            logger.warning(
                "reaped worker %s (silent for %.1f s): %s", worker_id, now - seen, counts
            )
            reaped.append(worker_id)
    for worker_id in spool.running_workers():
        if worker_id in registered or worker_id == own_id:
            continue
        try:
            age = now - os.stat(spool.running_dir(worker_id)).st_mtime
        except FileNotFoundError:
            continue
        if age > estimate:
            reap_worker(spool, worker_id, who=own_id, pid=L.worker_pid(worker_id))
            reaped.append(worker_id)
    return reaped
