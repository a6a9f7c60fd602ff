"""Periodic jobs: ``every=`` seconds or a 5-field ``cron=`` schedule.

    jobq worker periodic --processes 2          # in examples/: any number of workers and hosts
    jobq schedules                               # next tick, last tick's job and its state

Every worker that has these jobs registered takes part in scheduling them, and each tick is
enqueued exactly once however many run: two processes here, and no tick twice. A periodic
job takes no arguments.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import jobq

#: Seconds between heartbeats (the tests make it 1).
HEARTBEAT_EVERY = float(os.environ.get("HEARTBEAT_EVERY", "60"))
HEARTBEAT_FILE = Path(os.environ.get("HEARTBEAT_FILE", "heartbeat.log"))
UPLOADS = Path(os.environ.get("UPLOADS_DIR", "uploads"))


@jobq.job(name="periodic.heartbeat", every=HEARTBEAT_EVERY)
def heartbeat() -> float:
    """Append the time to a file that monitoring watches; return it."""
    now = time.time()
    with HEARTBEAT_FILE.open("a", encoding="utf-8") as f:
        f.write(f"{now:.3f}\n")
    return now


@jobq.job(name="periodic.clean_uploads", cron="30 3 * * *", tz="Europe/Madrid")
def clean_uploads() -> int:
    """Every night at 03:30 Madrid time, delete uploads older than a day; how many went."""
    removed = 0
    cutoff = time.time() - 86400
    for path in UPLOADS.glob("*"):
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink()
            removed += 1
    jobq.current_job().log.info("removed %d old uploads", removed)
    return removed
