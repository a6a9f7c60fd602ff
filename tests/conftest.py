"""Shared fixtures: every async test runs under asyncio and trio; each test gets its own spool."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import jobq

if TYPE_CHECKING:
    from collections.abc import Iterator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run each async test once per backend."""
    return str(request.param)


@pytest.fixture
def spool_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh spool directory, also made the process default (``JOBQ_SPOOL``)."""
    path = tmp_path / "spool"
    monkeypatch.setenv("JOBQ_SPOOL", str(path))
    jobq.configure(spool=path)
    yield path
    jobq.config._configured_spool = None


def jobq_command(*args: str) -> list[str]:
    """The installed ``jobq`` entry point with arguments."""
    return [os.path.join(os.path.dirname(sys.executable), "jobq"), *args]


def run_jobq(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``jobq`` command and capture its output."""
    return subprocess.run(
        jobq_command(*args), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
