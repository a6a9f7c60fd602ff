"""Validation of the names that become file and directory names in the spool.

Every name that reaches a path is checked here first, so a hostile queue name, job name or
job id can never point outside the spool.
"""

from __future__ import annotations

import os
import random
import re

from jobq.errors import InvalidName

__all__ = (
    "UNIQUE",
    "check_job_id",
    "check_job_name",
    "check_queue",
    "check_worker_id",
)

#: The random bits of jobq's own ids and temp names: not secret (the spool is private), only
#: unique, and cheaper than ``secrets`` (no system call). A private generator, so that an app
#: that seeds ``random`` does not give two processes the same ids; seeded afresh after a fork.
UNIQUE = random.Random()
os.register_at_fork(after_in_child=UNIQUE.seed)

_QUEUE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")
_JOB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,199}")
_JOB_ID = re.compile(r"[A-Za-z0-9_]{1,64}")
_WORKER_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def _check(kind: str, value: object, pattern: re.Pattern[str], rule: str) -> str:
    if not isinstance(value, str):
        raise InvalidName(f"{kind} must be a string, got {type(value).__name__}")
    if ".." in value or "/" in value or "\\" in value or not pattern.fullmatch(value):
        raise InvalidName(f"invalid {kind} {value!r}: {rule}")
    return value


def check_queue(name: object) -> str:
    """Return ``name`` if it is a valid queue name.

    Raises:
        InvalidName: unless it is 1-64 characters of letters, digits, ``_`` and ``-``.
    """
    return _check(
        "queue name", name, _QUEUE, "use 1-64 letters, digits, '_' or '-' (not starting with '-')"
    )


def check_job_name(name: object) -> str:
    """Return ``name`` if it is a valid registered job name (such as ``app.tasks.send``).

    Raises:
        InvalidName: unless it starts with a letter or ``_`` and holds only letters, digits,
            ``_ . : -`` (no ``..``), at most 200 characters.
    """
    return _check(
        "job name",
        name,
        _JOB_NAME,
        "use letters, digits, '_', '.', ':' or '-' (no '..', at most 200, starting with a letter)",
    )


def check_job_id(job_id: object) -> str:
    """Return ``job_id`` if it is a valid job id.

    Raises:
        InvalidName: unless it is 1-64 letters, digits or ``_``.
    """
    return _check("job id", job_id, _JOB_ID, "use 1-64 letters, digits or '_'")


def check_worker_id(worker_id: object) -> str:
    """Return ``worker_id`` if it is a valid worker id.

    Raises:
        InvalidName: unless it is 1-128 letters, digits, ``_``, ``.`` or ``-`` (no ``..``).
    """
    return _check("worker id", worker_id, _WORKER_ID, "use letters, digits, '_', '.' or '-'")
