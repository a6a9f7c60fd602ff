"""How a worker process logs: the one place that sets up logging for ``jobq worker``.

``configure()`` puts one handler on the root logger, writing to stderr either as text
(``2024-05-01 12:00:00,123 INFO jobq.worker: ...``) or as JSON lines for log shippers (``ts``,
``level``, ``logger``, ``message``, plus the job's fields where the record carries them, see
``job_fields``). Library code only logs; it never configures.

A child of ``jobq worker --processes N`` writes its log lines straight to the supervisor's
stderr and tags them itself, as the supervisor's relay tags the rest of what a child writes:
``[child N] `` before every line of text, a ``"child": N`` key first in JSON.

Failure story: nothing here touches the spool. A handler that cannot write (stderr closed) is
logging's own business: ``logging.Handler.handleError`` reports it and the worker goes on.
"""

from __future__ import annotations

import logging
import select
import sys
import time
from typing import IO, Any

import orjson

from jobq.context import JOB_LOG_ONLY, current_job_or_none

__all__ = (
    "FORMATS",
    "JOB_FIELDS_ATTR",
    "ChildHandler",
    "JsonFormatter",
    "TextFormatter",
    "configure",
    "job_fields",
    "tagged",
)

#: Longest tagged line (bytes, with its newline) a child writes to the supervisor's stderr
#: itself: a write of up to ``PIPE_BUF`` bytes to a pipe is never interleaved with another.
ATOMIC_WRITE = select.PIPE_BUF if hasattr(select, "PIPE_BUF") else 512

#: The values ``--log-format`` takes.
FORMATS = ("text", "json")
#: The LogRecord attribute that carries a job's fields (``extra=job_fields(...)``).
JOB_FIELDS_ATTR = "jobq"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_HANDLER_NAME = "jobq-stderr"


def job_fields(**fields: Any) -> dict[str, dict[str, Any]]:
    """The ``extra=`` of a log call: fields that the JSON format adds to the line.

    Fields whose value is None are left out.
    """
    return {JOB_FIELDS_ATTR: {k: v for k, v in fields.items() if v is not None}}


def tagged(text: str, child: int) -> str:
    """``text`` marked as supervised child ``child``'s, as the supervisor marks what it relays.

    Each line gets a ``[child N] `` prefix; a JSON log line gets a leading ``"child": N`` key
    instead, so it stays one JSON object.
    """
    if text.startswith('{"'):
        return f'{{"child":{child},{text[1:]}'
    return "\n".join(f"[child {child}] {line}" for line in text.split("\n"))


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT``, with the date and time formatted once a second, not once a line.

    A worker logs a line per job, and ``strftime`` was a third of what formatting one cost.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._second = -1
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``YYYY-MM-DD HH:MM:SS,mmm`` in local time, as ``logging.Formatter`` writes it."""
        second = int(record.created)
        if second != self._second:
            stamp = time.strftime(self.default_time_format, self.converter(second))
            self._second, self._stamp = second, stamp
        return f"{self._stamp},{int(record.msecs):03d}"


class ChildHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A supervised child's handler: its lines, tagged, straight to the supervisor's stderr.

    A line longer than ``ATOMIC_WRITE`` goes to the child's own stderr instead, untagged: the
    supervisor relays and tags it there, whole. Several children and the supervisor write to
    one stderr, and only a write of at most ``PIPE_BUF`` bytes to a pipe is never interleaved
    with another's.

    Args:
        stream: the supervisor's stderr (``jobq.supervisor.child_log_stream``).
        child: this child's number.
    """

    def __init__(self, stream: IO[str], child: int) -> None:
        super().__init__(stream)
        self.child = child

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record's line(s): tagged and direct, or through the relay if long."""
        try:
            line = self.format(record)
            text = tagged(line, self.child)
            # A character is at most 6 bytes here (a lone surrogate as \udcff).
            if (
                len(text) * 6 < ATOMIC_WRITE
                or len(text.encode("utf-8", "backslashreplace")) < ATOMIC_WRITE
            ):
                self.stream.write(text + "\n")
                self.stream.flush()
            else:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``message``.

    Job fields passed with ``extra=job_fields(...)`` are added at the top level, and so are
    the id, name, queue and attempt of the job that logged the line, if a job did; an
    exception comes as ``exc`` (its formatted traceback).
    """

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, JOB_FIELDS_ATTR, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                line.setdefault(key, value)
        job = current_job_or_none()  # a line logged by a running job: say which
        if job is not None and job.id != "local":
            line.setdefault("job_id", job.id)
            line.setdefault("job_name", job.name)
            line.setdefault("queue", job.queue)
            line.setdefault("attempt", job.attempt)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return orjson.dumps(line, default=repr).decode()


def configure(
    level: str | int = "INFO",
    fmt: str = "text",
    stream: IO[str] | None = None,
    child: int | None = None,
) -> None:
    """Log to stderr (or ``stream``) at ``level`` in ``fmt`` (``text`` or ``json``).

    ``child`` is the number of a supervised child, ``stream`` then the supervisor's stderr:
    its lines are tagged with the number (``ChildHandler``).

    Calling it again replaces the handler it installed before, so it is safe to call twice.
    The handler's own level is set too: job loggers log at DEBUG into the job's log file, and
    their records must not reach stderr below the chosen level.

    Raises:
        ValueError: for an unknown level or format.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}: use one of {', '.join(FORMATS)}")
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        if not isinstance(number, int):
            raise ValueError(
                f"unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
            )
        level = number
    out = stream if stream is not None else sys.stderr
    handler = logging.StreamHandler(out) if child is None else ChildHandler(out, child)
    handler.set_name(_HANDLER_NAME)
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_not_job_log_only)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)


def _not_job_log_only(record: logging.LogRecord) -> bool:
    # jobq's notes for a job's log file (its progress, a retried failure's traceback).
    return not getattr(record, JOB_LOG_ONLY, False)
