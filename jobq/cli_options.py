"""What the ``jobq`` commands share: ``--spool`` and the spool it names, job ids, durations,
JSON arguments and JSON output."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from jobq import config
from jobq.config import spool_dir
from jobq.errors import InvalidName, JobNotFound
from jobq.names import check_job_id

if TYPE_CHECKING:
    from jobq.spool import SpoolDir

__all__ = ("duration", "job_id_of", "json_arg", "print_json", "spool_for", "spool_option")

F = TypeVar("F", bound=Callable[..., Any])


def spool_option(func: F) -> F:
    """Give a command ``--spool PATH`` (default: ``$JOBQ_SPOOL`` or ``./jobq-spool``)."""
    return click.option(
        "--spool",
        "spool_path",
        metavar="PATH",
        default=None,
        help="Spool directory [default: $JOBQ_SPOOL or ./jobq-spool].",
    )(func)


def spool_for(spool_path: str | None, durable: bool | None = None) -> SpoolDir:
    """The spool a command works on: its ``--spool``, the group's, or the default."""
    ctx = click.get_current_context()
    path = spool_path or (ctx.obj or {}).get("spool") or config.default_spool_path()
    return spool_dir(path, durable)


def job_id_of(spool: SpoolDir, text: str) -> str:
    """``text`` as a job id; one that cannot be an id is a job that is not there (exit 1)."""
    try:
        return check_job_id(text)
    except InvalidName:
        raise JobNotFound(f"no job {text!r} in spool {spool.root}") from None


def print_json(value: object) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def duration(text: str, option: str) -> float:
    """Seconds in ``text`` (``30s``, ``15m``, ``12h``, ``7d``, ``2w``); else bad usage of
    ``option``."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise click.BadParameter(
            f"{text!r} is not a duration like 30s, 15m, 12h, 7d", param_hint=f"'{option}'"
        )
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit


def json_arg(text: str, kind: type, what: str) -> Any:
    """The JSON value of option ``what``, which must be a ``kind``; bad usage else."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=f"'{what}'") from None
    if not isinstance(value, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=f"'{what}'")
    return value
