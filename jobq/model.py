"""The job record and its JSON codec (orjson; never pickle).

A job file holds the immutable description of one job. An outcome record (in ``done/``,
``failed/`` or ``cancelled/``) is the job's fields plus what happened to it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from jobq.errors import InvalidName, SerializationError
from jobq.layout import FORMAT_VERSION, MAX_PRIORITY, MIN_PRIORITY, JobFileName
from jobq.names import UNIQUE, check_job_id, check_job_name, check_queue

__all__ = (
    "CorruptJob",
    "Job",
    "Outcome",
    "decode_job",
    "decode_record",
    "encode_job",
    "encode_record",
    "new_job_id",
)

STATE_KEYS = ("state", "attempts", "started_at", "finished_at", "result", "error", "worker")


class CorruptJob(ValueError):
    """A job file that cannot be run: not JSON, wrong format version, or missing fields."""


def new_job_id() -> str:
    """A fresh job id: a millisecond timestamp (so ids sort roughly by age) and 40 random bits."""
    return f"{time.time_ns() // 1_000_000:011x}{UNIQUE.getrandbits(40):010x}"


@dataclass(frozen=True, slots=True)
class Job:
    """One job as written to its job file.

    Attributes:
        id: unique job id.
        name: registered name of the function to run.
        queue: queue the job waits in.
        args: positional arguments (JSON values).
        kwargs: keyword arguments (JSON values).
        priority: higher runs first.
        retries: extra attempts allowed after a failure.
        retry_delay: base of the exponential backoff, in seconds.
        timeout: seconds an attempt may run, or None for no limit.
        enqueued_at: enqueue time, seconds since the epoch.
        key: the deduplication key it was enqueued with, if any.
        attempts_base: starts made before the last manual ``jobq retry``.
        after: ids of the jobs that must be ``done`` before this one may run.
    """

    id: str
    name: str
    queue: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    enqueued_at: float = 0.0
    key: str | None = None
    attempts_base: int = 0
    after: tuple[str, ...] = ()

    @property
    def file_name(self) -> JobFileName:
        """The pending file name of this job before its first start."""
        return JobFileName(self.priority, round(self.enqueued_at * 1_000_000), self.id, 0)

    def may_retry(self, attempts: int) -> bool:
        """Whether a job started ``attempts`` times may have another attempt after a failure.

        Starts before a manual ``jobq retry`` (``attempts_base``) do not count against
        ``retries``.
        """
        return attempts - self.attempts_base < self.retries + 1

    def to_dict(self) -> dict[str, Any]:
        """The job's fields as the JSON object stored in its file."""
        data: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "id": self.id,
            "name": self.name,
            "queue": self.queue,
            "args": self.args,
            "kwargs": self.kwargs,
            "priority": self.priority,
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "timeout": self.timeout,
            "enqueued_at": self.enqueued_at,
            "key": self.key,
        }
        if self.attempts_base:
            data["attempts_base"] = self.attempts_base
        if self.after:
            data["after"] = list(self.after)
        return data


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt of a job came to, as stored in its outcome record.

    Attributes:
        state: ``done``, ``failed`` or ``cancelled``.
        attempts: starts of the job so far, this one included.
        started_at: when this attempt started (epoch seconds), None if it never started.
        finished_at: when it ended (epoch seconds).
        result: the return value (``done`` only).
        error: ``{"type", "message", "traceback"}`` (``failed`` only).
        worker: the id of the worker that recorded the outcome.
    """

    state: str
    attempts: int
    started_at: float | None
    finished_at: float
    result: Any = None
    error: dict[str, str] | None = None
    worker: str | None = None


def encode_job(job: Job) -> bytes:
    """Encode ``job`` as the bytes of its job file.

    Raises:
        SerializationError: if its arguments are not JSON values.
    """
    return _dumps(job.to_dict(), f"arguments of job {job.name}")


def encode_record(job: Job, outcome: Outcome) -> bytes:
    """Encode an outcome record: the job's fields followed by its outcome.

    Raises:
        SerializationError: if the result is not a JSON value.
    """
    record = job.to_dict()
    record.update(
        state=outcome.state,
        attempts=outcome.attempts,
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
        result=outcome.result,
        error=outcome.error,
        worker=outcome.worker,
    )
    return _dumps(record, f"result of job {job.id}")


def _dumps(value: object, what: str) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise SerializationError(f"the {what} cannot be stored as JSON: {exc}") from None


def _number(data: dict[str, Any], key: str, default: float | None) -> float | None:
    value = data.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CorruptJob(f"{key!r} must be a number")
    return float(value)


def _integer(data: dict[str, Any], key: str, default: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CorruptJob(f"{key!r} must be an integer")
    return value


def _job_ids(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise CorruptJob("'after' must be a JSON array of job ids")
    try:
        return tuple(check_job_id(v) for v in value)
    except InvalidName as exc:
        raise CorruptJob(f"'after': {exc}") from None


def decode_job(raw: bytes) -> Job:
    """Decode and validate a job file.

    Raises:
        CorruptJob: if it is not JSON, has another format version, or a field is invalid.
    """
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CorruptJob(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CorruptJob("a job file must hold a JSON object")
    if data.get("format") != FORMAT_VERSION:
        raise CorruptJob(f"unsupported format {data.get('format')!r} (expected {FORMAT_VERSION})")
    try:
        job_id = check_job_id(data.get("id"))
        name = check_job_name(data.get("name"))
        queue = check_queue(data.get("queue", "default"))
    except InvalidName as exc:
        raise CorruptJob(str(exc)) from None
    args, kwargs = data.get("args", []), data.get("kwargs", {})
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise CorruptJob("'args' must be a JSON array and 'kwargs' a JSON object")
    priority = _integer(data, "priority", 0)
    retries = _integer(data, "retries", 0)
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY or retries < 0:
        raise CorruptJob("'priority' or 'retries' out of range")
    key = data.get("key")
    if key is not None and not isinstance(key, str):
        raise CorruptJob("'key' must be a string or null")
    return Job(
        id=job_id,
        name=name,
        queue=queue,
        args=args,
        kwargs=kwargs,
        priority=priority,
        retries=retries,
        retry_delay=_number(data, "retry_delay", 1.0) or 0.0,
        timeout=_number(data, "timeout", None),
        enqueued_at=_number(data, "enqueued_at", 0.0) or 0.0,
        key=key,
        attempts_base=_integer(data, "attempts_base", 0),
        after=_job_ids(data.get("after", [])),
    )


def decode_record(raw: bytes) -> tuple[Job, dict[str, Any]]:
    """Decode an outcome record into its job and the outcome fields (possibly empty).

    A record caught between the two renames of a commit still holds only the job; its
    outcome fields are then empty.

    Raises:
        CorruptJob: if the record is not a valid job record.
    """
    job = decode_job(raw)
    data = orjson.loads(raw)
    return job, {key: data[key] for key in STATE_KEYS if key in data}
