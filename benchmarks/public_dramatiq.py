"""The public workload's actor for Dramatiq on Redis, and its producer (``public_workload.py``).

``dramatiq public_dramatiq`` (its defaults: one process per CPU, 8 threads each) imports this
module. Redis is the one the driver started on loopback, at port ``$PUBLIC_REDIS_PORT``. The
producer runs as ``python -c "import public_dramatiq; public_dramatiq.main()" enqueue N``.
Dramatiq's worker processes send their stdout through a pipe to the parent, which writes it
to its stderr: the job's line ends up there.
"""

from __future__ import annotations

import json
import os
import sys
import time

import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(host="127.0.0.1", port=int(os.environ["PUBLIC_REDIS_PORT"])))


@dramatiq.actor
def print_time() -> None:
    """The workload's job: print one line with the time."""
    print(f"finished {time.time():.6f}", flush=True)


def main() -> None:
    command, n = sys.argv[1], int(sys.argv[2])
    if command != "enqueue":
        raise SystemExit(f"unknown command {command!r}")
    begin = time.perf_counter()
    for _ in range(n):
        print_time.send()
    print(json.dumps({"per_s": n / (time.perf_counter() - begin)}))
