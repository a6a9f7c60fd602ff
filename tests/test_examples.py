"""Every example in examples/ runs: the quickstart (``make run``) starts its own worker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import TYPE_CHECKING

from conftest import EXAMPLES

if TYPE_CHECKING:
    from pathlib import Path

# Example file -> the test that runs it. tasks.py is the app module quickstart.py enqueues to.
COVERED = {"quickstart.py": "test_quickstart", "tasks.py": "test_quickstart"}


def test_every_example_is_covered() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(COVERED)


def test_quickstart(tmp_path: Path) -> None:
    # The demo leaves its spool in $TMPDIR for the reader to inspect: keep it in tmp_path.
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("JOBQ_SPOOL", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        cwd=EXAMPLES.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"^enqueued 201 jobs in \d+ ms \(\d+ jobs/s\)$", out, re.MULTILINE), out
    assert re.search(r"^all 200 results back in [\d.]+ s \(\d+ jobs/s end to end\)$", out, re.M)
    assert "add(7, 7) = 14   slow_square(9) = 81" in out
    assert "the failing job raised ValueError: this job fails on purpose" in out
    assert re.search(r"^log of job \w+: .*adding 3 and 3$", out, re.MULTILINE), out

    # The closing `jobq status` table: both queues, every job accounted for, worker alive.
    rows = {
        line.split()[0]: line.split()[1:]
        for line in out.splitlines()
        if line[:4] in ("defa", "cpu ")
    }
    assert rows == {
        "default": ["0", "0", "0", "100", "0", "0"],
        "cpu": ["0", "0", "0", "100", "1", "0"],
    }
    assert "workers: 1 live" in out

    (spool,) = tmp_path.glob("jobq-demo-*")
    assert f"spool left at {spool}" in out
    assert (spool / "jobq-spool.json").is_file()
