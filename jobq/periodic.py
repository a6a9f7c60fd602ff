"""Periodic jobs: schedules (``cron=`` or ``every=``), their ticks, and enqueueing each tick once.

Every worker that has a periodic job registered and serves its queue takes part: on each
housekeeping tick it enqueues the ticks that came due. The spool's compare-and-swap makes that
happen once per tick however many workers and hosts run: a tick's job carries a deduplication
key (``keys/ID``, created with ``O_EXCL``) whose id is derived from the job name and the tick
time, so of all the workers that try, exactly one publishes it. No scheduler process exists to
be doubled (Celery beat's flaw) or to die.

Missed ticks: a worker handles every tick after the last one it handled while it ran. A worker
that starts (or comes back from a stall longer than its lease) considers only the latest tick,
and enqueues it only if it is less than one interval (at most an hour) old: a restart does
not skip the nightly job, and a week offline does not run it 2,000 times.

Each served schedule is described in ``schedules/NAME.json`` (its name, queue, expression,
zone, and the last tick enqueued), so ``jobq schedules`` works without importing the app.

Failure story: a worker killed after taking a tick's key but before publishing its job leaves
a key with no job; another worker that tries the same tick takes the key over once it is
``STALE_KEY_AGE`` old (as for any deduplicated enqueue) and publishes the job. A worker killed
after publishing but before updating ``schedules/NAME.json`` leaves that file one tick behind:
the next tick corrects it, and the key still blocks a second publish. A spool that refuses
a tick (a full disk) fails that housekeeping round only: the worker tries the same ticks again
in the next round, 0.2 s later.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from cronsim import CronSim, CronSimError

from jobq import layout as L
from jobq.errors import ConfigurationError, InvalidName, JobNotFound
from jobq.keys import STALE_KEY_AGE, holder_queue
from jobq.model import Job
from jobq.names import check_job_name
from jobq.spool.files import list_names, translated

if TYPE_CHECKING:
    from collections.abc import Iterable

    from jobq.registry import JobSpec
    from jobq.spool import SpoolDir

__all__ = (
    "MAX_CATCH_UP",
    "Schedule",
    "Scheduler",
    "enqueue_tick",
    "read_schedules",
    "tick_job_id",
)

logger = logging.getLogger("jobq.worker")

#: A missed tick is made up only while it is younger than one interval, and never past this.
MAX_CATCH_UP = 3600.0

#: At most this many overdue ticks are enqueued in one go after a stall of a running worker.
MAX_TICKS_PER_ROUND = 100


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a periodic job runs: a 5-field cron expression in a time zone, or a fixed interval.

    ``every`` ticks fall on multiples of the interval since the epoch, so all workers compute
    the same ticks without talking to each other.

    Attributes:
        cron: the cron expression, or None.
        every: the interval in seconds, or None.
        tz: the IANA time zone of the cron expression (``UTC`` by default).
    """

    cron: str | None = None
    every: float | None = None
    tz: str = "UTC"

    @classmethod
    def parse(cls, cron: str | None, every: float | None, tz: str | None) -> Schedule | None:
        """Check ``@job`` options and build the schedule; None when the job is not periodic.

        Raises:
            ConfigurationError: if the expression, the zone or the interval is invalid, or
                both ``cron`` and ``every`` are given.
        """
        if cron is None and every is None:
            if tz is not None:
                raise ConfigurationError("tz= only applies to cron= schedules")
            return None
        if cron is not None and every is not None:
            raise ConfigurationError("give a periodic job cron= or every=, not both")
        if every is not None:
            if tz is not None:
                raise ConfigurationError("tz= only applies to cron= schedules")
            if isinstance(every, bool) or not isinstance(every, int | float):
                raise ConfigurationError(f"every must be seconds, got {every!r}")
            if not math.isfinite(every) or every < 1:
                raise ConfigurationError(f"every must be at least 1 second, got {every!r}")
            return cls(every=float(every))
        zone = "UTC" if tz is None else tz
        try:
            info = zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigurationError(f"unknown time zone {zone!r} (use an IANA name)") from None
        if not isinstance(cron, str) or len(cron.split()) != 5:
            raise ConfigurationError(f"cron must be a 5-field expression, got {cron!r}")
        try:
            CronSim(cron, datetime.now(info))
        except CronSimError as exc:
            raise ConfigurationError(f"invalid cron expression {cron!r}: {exc}") from None
        return cls(cron=" ".join(cron.split()), tz=zone)

    def describe(self) -> str:
        """The schedule as ``jobq schedules`` prints it: the cron expression or ``every 30s``."""
        if self.cron is not None:
            return self.cron
        return f"every {self.every:g}s"

    def to_dict(self) -> dict[str, Any]:
        """The schedule's fields as stored in ``schedules/NAME.json``."""
        return {"cron": self.cron, "every": self.every, "tz": self.tz}

    def next_tick(self, now: float) -> float:
        """The first tick strictly after ``now`` (epoch seconds)."""
        if self.every is not None:
            return (math.floor(now / self.every) + 1) * self.every
        assert self.cron is not None
        zone = zoneinfo.ZoneInfo(self.tz)
        return next(iter(CronSim(self.cron, datetime.fromtimestamp(now, zone)))).timestamp()

    def prev_tick(self, now: float) -> float:
        """The latest tick at or before ``now`` (epoch seconds)."""
        return self.ticks_between(-math.inf, now, limit=1)[0]

    def ticks_between(
        self, after: float, until: float, *, limit: int = MAX_TICKS_PER_ROUND
    ) -> list[float]:
        """The latest ``limit`` ticks in ``(after, until]``, oldest first."""
        if self.every is not None:
            last = math.floor(until / self.every)
            first = last - limit + 1
            if after > -math.inf:
                first = max(first, math.floor(after / self.every) + 1)
            return [k * self.every for k in range(first, last + 1)]
        assert self.cron is not None
        # Reverse iteration yields ticks before its start: start one second past ``until``.
        start = datetime.fromtimestamp(math.floor(until) + 1, zoneinfo.ZoneInfo(self.tz))
        ticks: list[float] = []
        for moment in CronSim(self.cron, start, reverse=True):
            tick = moment.timestamp()
            if tick <= after or len(ticks) >= limit:
                break
            ticks.append(tick)
        return ticks[::-1]

    def catch_up_window(self, tick: float) -> float:
        """How long after ``tick`` a starting worker still enqueues it (one interval, <= 1 h)."""
        return min(self.next_tick(tick) - tick, MAX_CATCH_UP)


_SLUG = re.compile(r"[^A-Za-z0-9_]")


def tick_job_id(name: str, tick: float) -> str:
    """The job id of one tick: the job's short name, the tick time (UTC) and a name hash.

    For example ``cleanup_20261130T190500Z_3fa2c1``: readable in ``jobq jobs``, unique per job
    name and tick, and the same in every worker that computes it.
    """
    short = _SLUG.sub("_", name.rsplit(".", 1)[-1])[:24] or "job"
    moment = datetime.fromtimestamp(tick, UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%S")
    if moment.microsecond:
        stamp += f"{moment.microsecond // 1000:03d}"
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{short}_{stamp}Z_{digest}"


def enqueue_tick(spool: SpoolDir, spec: JobSpec, tick: float) -> str:
    """Enqueue the job of one tick unless some worker already did.

    The tick's deduplication key is the compare-and-swap: of all callers for one tick,
    exactly one publishes (see ``jobq.keys`` for a key left by a dead worker).

    Returns:
        ``enqueued`` if this call published it, ``taken`` if another did, ``unconfirmed`` if
        another worker took its key a moment ago (look again once that key would be stale).
    """
    job = _tick_job(spec, tick)
    if spool.publish([job])[0]:
        return "enqueued"
    age = spool.key_age(job.id)
    if age is not None and age <= STALE_KEY_AGE:
        return "unconfirmed"  # the usual case: another worker enqueued this tick just now
    return "enqueued" if holder_queue(spool, job, None)[1] else "taken"


def _tick_job(spec: JobSpec, tick: float) -> Job:
    return Job(
        id=tick_job_id(spec.name, tick),
        name=spec.name,
        queue=spec.queue,
        priority=spec.priority,
        retries=spec.retries,
        retry_delay=spec.retry_delay,
        timeout=spec.timeout,
        enqueued_at=tick,
        key=f"periodic:{spec.name}@{tick!r}",
    )


class Scheduler:
    """The periodic jobs one worker takes part in scheduling, and what it handled so far.

    Args:
        spool: the spool.
        specs: the periodic jobs the worker has registered and whose queues it serves.
        stall: seconds without a ``run_due`` call after which the worker counts as having been
            away (its lease): it then considers only the latest tick, as at start.
    """

    def __init__(self, spool: SpoolDir, specs: Iterable[JobSpec], stall: float) -> None:
        self.spool = spool
        self.specs = [s for s in specs if s.schedule is not None]
        self.stall = stall
        self._handled: dict[str, float] = {}  # name -> time through which ticks are handled
        # Ticks whose key another worker held without its job in sight yet: (when to look
        # again, spec, tick). Its publisher may have died between the key and the job.
        self._unconfirmed: list[tuple[float, JobSpec, float]] = []
        self._last_call = -math.inf

    def register(self) -> None:
        """Describe the served schedules in ``schedules/`` (``jobq schedules`` reads them)."""
        for spec in self.specs:
            state = _read_state(self.spool, spec.name)
            self._write_state(spec, state.get("last_tick"), state.get("last_job_id"))

    def run_due(self, now: float | None = None) -> int:
        """Enqueue the ticks that came due since the last call; how many this worker enqueued.

        Args:
            now: the current time (epoch seconds); tests pass a fake clock.
        """
        now = time.time() if now is None else now
        mono = time.monotonic()
        away = mono - self._last_call > self.stall
        self._last_call = mono
        enqueued = 0
        for spec in self.specs:
            enqueued += self._run_spec(spec, now, fresh=away or spec.name not in self._handled)
        if self._unconfirmed and self._unconfirmed[0][0] <= mono:
            enqueued += self._confirm(mono)
        return enqueued

    def _confirm(self, mono: float) -> int:
        """Look again at ticks whose key was taken by a worker that may have died."""
        enqueued = 0
        later = []
        for when, spec, tick in self._unconfirmed:
            if when > mono:
                later.append((when, spec, tick))
                continue
            last = _read_state(self.spool, spec.name).get("last_tick")
            if isinstance(last, int | float) and last >= tick:
                continue  # its publisher got as far as recording it: the job exists
            job = _tick_job(spec, tick)
            if holder_queue(self.spool, job, None)[1]:
                enqueued += 1
                logger.warning("periodic %s: enqueued tick %s whose first publisher died",
                               spec.name, job.id)  # fmt: skip
                if not isinstance(last, int | float) or tick > last:
                    self._write_state(spec, tick, job.id)
        self._unconfirmed = later
        return enqueued

    def _run_spec(self, spec: JobSpec, now: float, *, fresh: bool) -> int:
        schedule = spec.schedule
        assert schedule is not None
        if fresh:
            latest = schedule.prev_tick(now)
            due = [latest] if now - latest < schedule.catch_up_window(latest) else []
        else:
            due = schedule.ticks_between(self._handled[spec.name], now)
        if not due:
            self._handled[spec.name] = now
            return 0
        # A tick at or before the last one recorded was enqueued already (its record and key
        # may have expired since: never enqueue it twice).
        last = _read_state(self.spool, spec.name).get("last_tick")
        if isinstance(last, int | float):
            due = [t for t in due if t > last]
        enqueued = []
        for tick in due:
            outcome = enqueue_tick(self.spool, spec, tick)
            if outcome == "unconfirmed":
                self._unconfirmed.append((time.monotonic() + STALE_KEY_AGE + 1, spec, tick))
            if outcome == "enqueued":
                enqueued.append(tick)
                logger.info(
                    "periodic %s: enqueued tick %s", spec.name, tick_job_id(spec.name, tick)
                )
        if enqueued:  # the worker that enqueued a tick records it; the others have nothing new
            self._write_state(spec, enqueued[-1], tick_job_id(spec.name, enqueued[-1]))
        # Only now: if the spool refused a tick (a full disk), the next round tries it again.
        self._handled[spec.name] = now
        return len(enqueued)

    def _write_state(self, spec: JobSpec, last_tick: object, last_job_id: object) -> None:
        assert spec.schedule is not None
        state = {
            "name": spec.name,
            "queue": spec.queue,
            "schedule": spec.schedule.describe(),
            **spec.schedule.to_dict(),
            "last_tick": last_tick,
            "last_job_id": last_job_id,
            "updated_at": time.time(),
        }
        self.spool.ensure()
        directory = self.spool.path(L.SCHEDULES)
        with translated("describe a periodic job"):
            os.makedirs(directory, mode=0o700, exist_ok=True)
            self.spool.write_file(_state_path(self.spool, spec.name), orjson.dumps(state))


def _state_path(spool: SpoolDir, name: str) -> str:
    return spool.path(L.SCHEDULES, check_job_name(name) + L.JOB_SUFFIX)


def _read_state(spool: SpoolDir, name: str) -> dict[str, Any]:
    try:
        with open(_state_path(spool, name), "rb") as f:
            data = orjson.loads(f.read())
    except (OSError, ValueError):  # missing, or emptied by a power cut: a hint, not the truth
        return {}
    return data if isinstance(data, dict) else {}


def read_schedules(spool: SpoolDir, now: float | None = None) -> list[dict[str, Any]]:
    """The schedules the workers registered, as ``jobq schedules --json`` prints them.

    Each entry: name, queue, schedule, tz, next_tick, last_tick, last_job_id and last_state
    (the state of the last tick's job, None once its record is gone).
    """
    from jobq.admin import job_state  # admin builds on the spool; import on use keeps it light

    now = time.time() if now is None else now
    found = []
    for filename in sorted(list_names(spool.path(L.SCHEDULES))):
        if not filename.endswith(L.JOB_SUFFIX):
            continue
        try:
            name = check_job_name(filename.removesuffix(L.JOB_SUFFIX))
        except InvalidName:
            continue
        state = _read_state(spool, name)
        if not state:
            continue
        try:
            schedule = Schedule.parse(state.get("cron"), state.get("every"), _tz_of(state))
        except ConfigurationError:
            schedule = None
        last_job_id = state.get("last_job_id")
        last_state = None
        if isinstance(last_job_id, str):
            try:
                last_state = job_state(spool, last_job_id)
            except (JobNotFound, InvalidName):
                last_state = None
        found.append({
            "name": name,
            "queue": state.get("queue"),
            "schedule": schedule.describe() if schedule else state.get("schedule"),
            "tz": state.get("tz"),
            "next_tick": schedule.next_tick(now) if schedule else None,
            "last_tick": state.get("last_tick"),
            "last_job_id": last_job_id,
            "last_state": last_state,
        })  # fmt: skip
    return found


def _tz_of(state: dict[str, Any]) -> str | None:
    return state.get("tz") if state.get("cron") is not None else None


def describe_tick(tick: float | None) -> str:
    """A tick time for people: ISO 8601 in UTC, ``-`` for none."""
    if tick is None:
        return "-"
    return datetime.fromtimestamp(tick, UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"
