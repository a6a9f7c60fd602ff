"""A worker app whose process stops itself (SIGSTOP) the moment its worker has registered.

A test sends SIGTERM to the stopped process and then SIGCONT, so the signal lands right after
the registration: a window too short to hit from outside the process.
"""

from __future__ import annotations

import os
import signal

import jobq.worker

_register = jobq.worker.Worker._register


def _register_then_stop(self: jobq.worker.Worker, worker_id: str) -> None:
    _register(self, worker_id)
    os.kill(os.getpid(), signal.SIGSTOP)


jobq.worker.Worker._register = _register_then_stop  # type: ignore[method-assign]
