"""The public workload's task for Huey on Redis, and its producer (run by ``public_workload.py``).

``huey_consumer public_huey.huey -w 10 -k process`` imports this module. Redis is the one the
driver started on loopback, at port ``$PUBLIC_REDIS_PORT``. The producer runs as
``python -c "import public_huey; public_huey.main()" enqueue N`` and prints one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import time

from huey import RedisHuey

huey = RedisHuey("public", host="127.0.0.1", port=int(os.environ["PUBLIC_REDIS_PORT"]))


@huey.task()
def print_time() -> None:
    """The workload's job: print one line with the time (None: Huey stores no result)."""
    print(f"finished {time.time():.6f}", flush=True)


def main() -> None:
    command, n = sys.argv[1], int(sys.argv[2])
    if command != "enqueue":
        raise SystemExit(f"unknown command {command!r}")
    begin = time.perf_counter()
    for _ in range(n):
        print_time()  # enqueues: one LPUSH, returned before the next
    print(json.dumps({"per_s": n / (time.perf_counter() - begin)}))
