"""A worker app whose process kills itself (SIGKILL) at one step of committing an outcome.

``$JOBQ_TEST_DIE_AT`` picks the step: ``fence`` dies when the staged record is about to be
renamed into place (the job file already moved to its fence name), ``record`` when the fence
file is about to be removed (the record already in place). Unset, the worker runs normally.
Its jobs append the worker's pid to ``$JOBQ_TEST_OUT/runs``.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import jobq
import jobq.spool.files

_STEP = os.environ.get("JOBQ_TEST_DIE_AT")
FileOps = jobq.spool.files.FileOps
_rename, _remove = FileOps.rename, FileOps.remove


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _rename_or_die(self: jobq.spool.files.FileOps, src: str, dst: str, **kwargs: Any) -> bool:
    if _STEP == "fence" and src.endswith(".rec"):
        _die()
    return _rename(self, src, dst, **kwargs)


def _remove_or_die(self: jobq.spool.files.FileOps, path: str) -> bool:
    if _STEP == "record" and "/running/" in path:
        _die()
    return _remove(self, path)


if _STEP:  # a test process imports this for the job names alone
    FileOps.rename = _rename_or_die  # type: ignore[method-assign]
    FileOps.remove = _remove_or_die  # type: ignore[method-assign]


def _note_run() -> None:
    with open(os.path.join(os.environ["JOBQ_TEST_OUT"], "runs"), "a") as f:
        f.write(f"{os.getpid()}\n")


@jobq.job(name="commit.touch")
async def touch() -> int:
    """Record this run (the worker's pid) and return the pid."""
    _note_run()
    return os.getpid()


@jobq.job(name="commit.fail", retries=0)
async def fail() -> None:
    """Record this run, then fail."""
    _note_run()
    raise RuntimeError("failed on purpose")
