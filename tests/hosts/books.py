"""The campaign's books: what the spool and the jobs' own notes say happened to each job.

``record`` (``hosts_app``) notes every start of a job in a file of the host it ran on; the
spool holds one outcome record per finished job. ``audit`` compares the two; ``timeline`` lays
a worker's log out against the moments the test acted.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import hosts_app

if TYPE_CHECKING:
    from pathlib import Path

STATES = ("done", "failed", "cancelled")
WAITING = ("pending", "scheduled", "waiting")


def done_ids(spool: Path) -> set[str]:
    """Ids with a ``done`` record (``done/default/ID.json``)."""
    try:
        names = os.listdir(spool / "done" / "default")
    except FileNotFoundError:
        return set()
    return {name.removesuffix(".json") for name in names if name.endswith(".json")}


@dataclass
class Books:
    """What the spool and the side-effect files say about the jobs."""

    lost: list[str]
    doubled: list[str]
    started_twice: list[tuple[str, int]]
    stale: list[str]
    reruns: int
    ran_on: dict[str, int]


def read_side_effects(out: Path) -> list[tuple[str, str, int, int]]:
    """Every start noted by ``record`` on every host: (job id, host, pid, attempt)."""
    rows = []
    for path in sorted(out.glob("h*.txt")):
        rows.extend(hosts_app.read_lines(path))
    return rows


def where_jobs_are(spool: Path, ids: set[str]) -> dict[str, list[str]]:
    """For each job id, every place in the spool that holds a file of it."""
    places: dict[str, list[str]] = defaultdict(list)
    for state in STATES:
        for queue_dir in (spool / state).glob("*"):
            for name in os.listdir(queue_dir):
                places[name.removesuffix(".json")].append(f"{state}/{queue_dir.name}/{name}")
    folders = [f for state in WAITING for f in (spool / "queues").glob(f"*/{state}")]
    for folder in [*folders, *(spool / "running").glob("*")]:
        for name in os.listdir(folder):
            for token in name.replace("@", "-").split("-"):
                if token in ids:
                    places[token].append(f"{folder.relative_to(spool)}/{name}")
    return places


def read_record(path: Path) -> dict[str, Any]:
    """An outcome record; a failed read is tried again for 2.5 s (the error is kept if it lasts).

    A record renamed over its name moments ago can read as missing through another host's
    client until its cached directory entry expires (GlusterFS: 1 s): docs/scaling-out.md.
    """
    for attempt in range(6):
        try:
            record: dict[str, Any] = json.loads(path.read_bytes())
        except OSError as exc:
            print(f"note: reading {path.name} failed ({exc.strerror}), attempt {attempt + 1}")
            if attempt == 5:
                raise
            time.sleep(0.5)
        else:
            return record
    raise AssertionError("unreachable")


def audit(spool: Path, ids: list[str], out: Path) -> Books:
    """Lost, doubly recorded, doubly started and stale jobs among ``ids``."""
    wanted = set(ids)
    places = where_jobs_are(spool, wanted)
    starts = read_side_effects(out)
    last_start: dict[str, tuple[str, int, int]] = {}
    for job_id, host, pid, attempt in starts:
        if attempt >= last_start.get(job_id, ("", 0, 0))[2]:
            last_start[job_id] = (host, pid, attempt)
    stale = []
    done = done_ids(spool)
    for job_id in sorted(wanted & done):
        record = read_record(spool / "done" / "default" / f"{job_id}.json")
        result = record.get("result") or {}
        worker_pid = int(str(record.get("worker")).split(".")[-2] or "0")
        recorded = (result.get("host"), result.get("pid"), record.get("attempts"))
        if recorded != last_start.get(job_id) or worker_pid != result.get("pid"):
            stale.append(f"{job_id}: record {recorded} worker {record.get('worker')}, "
                         f"last start {last_start.get(job_id)}")  # fmt: skip
    counts = Counter((job_id, attempt) for job_id, _, _, attempt in starts)
    return Books(
        lost=sorted(wanted - done),
        doubled=sorted(f"{i}: {places[i]}" for i in wanted if len(places.get(i, [])) > 1),
        started_twice=sorted(key for key, n in counts.items() if n > 1),
        stale=stale,
        reruns=sum(1 for _, _, attempt in last_start.values() if attempt > 1),
        ran_on=dict(sorted(Counter(host for _, host, _, _ in starts).items())),
    )


def fmt(seconds: float | None) -> str:
    """Seconds to one decimal, or ``?``."""
    return "?" if seconds is None else f"{seconds:.1f}"


def timeline(output: str, events: dict[str, float]) -> list[str]:
    """A worker's log with times relative to the cut; runs of ``done`` lines summed up."""
    cut = events["cut"]
    rows = [(at - cut, f"---- {what}") for what, at in events.items()]
    done_run: list[float] = []
    at = cut
    for line in output.splitlines():
        stamp = _log_time(line)
        at = stamp if stamp is not None else at
        if " done in " in line:
            done_run.append(at - cut)
            continue
        if done_run:
            rows.append((done_run[0], f"[{len(done_run)} jobs done until {done_run[-1]:+.1f}]"))
            done_run = []
        rows.append((at - cut, line[24:] if stamp is not None else line))
    if done_run:
        rows.append((done_run[0], f"[{len(done_run)} jobs done until {done_run[-1]:+.1f}]"))
    rows.sort(key=lambda row: row[0])
    return [f"{offset:+7.1f}  {text}" for offset, text in rows[-80:]]


def _log_time(line: str) -> float | None:
    try:
        stamp = datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return None
    return stamp.timestamp()
