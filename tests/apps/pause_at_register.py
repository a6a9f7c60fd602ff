"""A worker app whose process stops itself (SIGSTOP) the moment its worker has registered.

A test sends SIGTERM to the stopped process and then SIGCONT, so the signal lands right after
the registration: a window too short to hit from outside the process.
"""

from __future__ import annotations

import os
import signal

import jobq.lease

_register = jobq.lease.Registration._register


def _register_then_stop(self: jobq.lease.Registration, worker_id: str) -> None:
    _register(self, worker_id)
    os.kill(os.getpid(), signal.SIGSTOP)


jobq.lease.Registration._register = _register_then_stop  # type: ignore[method-assign]
