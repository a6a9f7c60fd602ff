"""A periodic job for the real-worker tests (imported by ``jobq worker`` processes only).

Kept out of the test process: a periodic job registered there would be scheduled by every
in-process ``jobq.Worker`` of every other test.
"""

from __future__ import annotations

import time

import jobq
from apps.workflows import record


@jobq.job(name="wf.tick", every=1)
def tick() -> None:
    """A periodic job that runs every second."""
    record("tick", at=time.time())
