"""Periodic jobs: schedules, exactly-once ticks across workers, missed ticks, ``jobq schedules``.

Tick arithmetic and the missed-tick rule run against a real spool with a fake clock; the
exactly-once promise runs with three real ``jobq worker`` processes, one of them SIGKILLed.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest
from conftest import run_jobq

import jobq
from jobq.periodic import Schedule, Scheduler, tick_job_id
from jobq.registry import JobSpec
from jobq.spool import SpoolDir

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from conftest import WorkerProcess


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _pending_ids(spool: Path, queue: str = "default") -> list[str]:
    names = os.listdir(spool / "queues" / queue / "pending")
    return sorted(n.split("-")[2] for n in names)


# -- options checked at decoration ---------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"cron": "*/5 * * *"}, "5-field"),
        ({"cron": "61 * * * *"}, "invalid cron"),
        ({"cron": "0 3 * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
        ({"every": 0.5}, "at least 1 second"),
        ({"every": "often"}, "every must be seconds"),
        ({"cron": "* * * * *", "every": 60}, "not both"),
        ({"every": 10, "tz": "Europe/Madrid"}, "tz= only applies"),
    ],
)
def test_bad_schedules_are_refused_at_decoration(options: dict[str, object], message: str) -> None:
    decorate: Any = jobq.job  # the options are wrong on purpose: no overload matches
    with pytest.raises(jobq.ConfigurationError, match=message):
        decorate(name="bad.schedule", **options)


def test_a_periodic_job_with_parameters_is_refused() -> None:
    with pytest.raises(jobq.ConfigurationError, match="must take no arguments"):

        @jobq.job(name="bad.periodic", every=60)
        def report(day: str) -> None: ...


def test_cron_ticks_follow_the_time_zone() -> None:
    madrid = Schedule.parse("0 3 * * *", None, "Europe/Madrid")
    assert madrid is not None
    # 03:00 in Madrid is 02:00 UTC in winter (CET) and 01:00 UTC in summer (CEST).
    assert madrid.next_tick(_utc("2026-12-01T00:00:00")) == _utc("2026-12-01T02:00:00")
    assert madrid.next_tick(_utc("2026-07-01T00:00:00")) == _utc("2026-07-01T01:00:00")
    every5 = Schedule.parse("*/5 * * * *", None, None)
    assert every5 is not None
    assert every5.prev_tick(_utc("2026-12-01T10:07:30")) == _utc("2026-12-01T10:05:00")
    assert every5.prev_tick(_utc("2026-12-01T10:05:00")) == _utc("2026-12-01T10:05:00")
    assert every5.describe() == "*/5 * * * *"


def test_tick_ids_are_readable_and_unique() -> None:
    at = _utc("2026-11-30T19:05:00")
    first = tick_job_id("app.tasks.cleanup", at)
    assert first.startswith("cleanup_20261130T190500Z_")
    assert tick_job_id("other.cleanup", at) != first  # same short name, another job
    assert tick_job_id("app.tasks.cleanup", at + 60) != first


# -- exactly once, with a fake clock -------------------------------------------------------


# Specs built by hand, not registered: a periodic job registered in the test process would be
# scheduled by the in-process workers of every other test.
SPECS = {
    "periodic.every10": Schedule.parse(None, 10, None),
    "periodic.nightly": Schedule.parse("0 3 * * *", None, None),
}


def _scheduler(spool: Path, name: str) -> Scheduler:
    spec = JobSpec(name, print, "default", 0, 1.0, None, 0, schedule=SPECS[name])
    return Scheduler(jobq.Spool(spool).dir, [spec], stall=3600.0)


def test_several_workers_enqueue_each_tick_once(spool_path: Path) -> None:
    workers = [_scheduler(spool_path, "periodic.every10") for _ in range(3)]
    start = _utc("2026-11-30T12:00:05")
    # Each "worker" looks at its own pace; all of them see every tick.
    for step in range(40):
        for i, w in enumerate(workers):
            w.run_due(start + step * 1.0 + i * 0.3)
    ids = _pending_ids(spool_path)
    expected = [
        tick_job_id("periodic.every10", _utc("2026-11-30T12:00:00") + 10 * k) for k in range(5)
    ]
    assert ids == sorted(expected)  # 12:00:00 (made up at start) to 12:00:40, once each


def test_a_running_worker_makes_up_ticks_it_slept_through(spool_path: Path) -> None:
    worker = _scheduler(spool_path, "periodic.every10")
    t0 = _utc("2026-11-30T12:00:01")
    worker.run_due(t0)
    assert worker.run_due(t0 + 35) == 3  # 12:00:10, :20, :30: the loop was slow, not away
    assert len(_pending_ids(spool_path)) == 4


def test_missed_ticks_are_not_made_up_except_the_latest_within_an_interval(
    spool_path: Path,
) -> None:
    # A nightly job: a worker starting at 03:30 runs tonight's tick (less than an hour late)...
    assert _scheduler(spool_path, "periodic.nightly").run_due(_utc("2026-11-30T03:30:00")) == 1
    assert _pending_ids(spool_path) == [tick_job_id("periodic.nightly", _utc("2026-11-30T03:00"))]
    # ...one starting at 05:00 does not, and a week offline does not run it seven times.
    assert _scheduler(spool_path, "periodic.nightly").run_due(_utc("2026-12-01T05:00:00")) == 0
    assert _scheduler(spool_path, "periodic.nightly").run_due(_utc("2026-12-08T04:30:00")) == 0
    assert len(_pending_ids(spool_path)) == 1


def test_a_tick_whose_record_expired_is_not_enqueued_again(spool_path: Path) -> None:
    at = _utc("2026-11-30T12:00:02")
    assert _scheduler(spool_path, "periodic.every10").run_due(at) == 1
    job_id = tick_job_id("periodic.every10", _utc("2026-11-30T12:00:00"))
    # The job ran and its record and key expired (result_ttl); a worker starting now must
    # not take the tick for a missed one.
    for name in os.listdir(spool_path / "queues" / "default" / "pending"):
        os.unlink(spool_path / "queues" / "default" / "pending" / name)
    os.unlink(spool_path / "keys" / job_id)
    assert _scheduler(spool_path, "periodic.every10").run_due(at + 3) == 0


def test_a_key_left_by_a_dead_worker_is_taken_over(spool_path: Path) -> None:
    at = _utc("2026-11-30T12:00:02")
    job_id = tick_job_id("periodic.every10", _utc("2026-11-30T12:00:00"))
    (spool_path / "keys").mkdir(parents=True)
    (spool_path / "keys" / job_id).touch()  # a worker died after taking the key
    old = time.time() - 60
    os.utime(spool_path / "keys" / job_id, (old, old))
    assert _scheduler(spool_path, "periodic.every10").run_due(at) == 1
    assert _pending_ids(spool_path) == [job_id]


# -- real workers --------------------------------------------------------------------------


def _start(worker_process: Callable[..., WorkerProcess], spool: Path) -> WorkerProcess:
    return worker_process("apps.ticks", "--spool", str(spool), "--lease", "2",
                          "--concurrency", "4")  # fmt: skip


def test_three_workers_enqueue_every_tick_exactly_once_even_when_one_is_killed(
    tmp_path: Path, worker_process: Callable[..., WorkerProcess], monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "spool"
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("JOBQ_TEST_OUT", str(out))
    workers = [_start(worker_process, spool) for _ in range(3)]
    time.sleep(5.5)
    os.kill(workers[0].pid, signal.SIGKILL)
    workers[0].wait()
    time.sleep(5.5)
    for w in workers[1:]:
        assert w.stop() == 0, w.output()
    done = sorted(n.removesuffix(".json") for n in os.listdir(spool / "done" / "default"))
    ticks = sorted(n for n in done if n.startswith("tick_"))
    assert len(ticks) >= 9, done
    # Consecutive seconds from the first tick to the last: none lost, none doubled.
    seconds = [datetime.strptime(t.split("_")[1], "%Y%m%dT%H%M%SZ") for t in ticks]
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(seconds)}
    assert gaps == {1.0}, ticks
    runs = [json.loads(line) for line in (out / "tick.jsonl").read_text().splitlines()]
    first_runs = Counter(r["id"] for r in runs if r["attempt"] == 1)
    assert set(first_runs.values()) == {1}  # no tick was ever enqueued twice
    assert {r["pid"] for r in runs} - {workers[0].pid}  # the survivors ran ticks too
    # jobq schedules reads what the workers registered, without importing the app.
    listed = run_jobq("schedules", "--json", "--spool", str(spool))
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["name"] == "wf.tick"
    assert entry["queue"] == "default"
    assert entry["schedule"] == "every 1s"
    assert entry["last_job_id"] in ticks[-3:]
    assert entry["last_state"] in ("done", "pending", "running")
    assert entry["next_tick"] > entry["last_tick"]
    table = run_jobq("schedules", "--spool", str(spool))
    assert "wf.tick" in table.stdout
    assert "every 1s" in table.stdout


def test_schedules_of_a_path_that_is_no_spool_exits_1(tmp_path: Path) -> None:
    done = run_jobq("schedules", "--spool", str(tmp_path / "nothing"))
    assert done.returncode == 1
    assert done.stderr.strip() == f"jobq: no spool at {tmp_path / 'nothing'}"
    assert not (tmp_path / "nothing").exists()


def test_a_burst_worker_schedules_nothing(
    tmp_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    spool = tmp_path / "spool"
    worker = worker_process("apps.ticks", "--spool", str(spool), "--burst")
    assert worker.wait() == 0, worker.output()
    assert not (spool / "done" / "default").exists() or not os.listdir(spool / "done" / "default")


def test_a_tick_the_spool_refused_is_tried_again(
    spool_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = _scheduler(spool_path, "periodic.every10")
    t0 = _utc("2026-11-30T12:00:01")
    worker.run_due(t0)
    real_publish = SpoolDir.publish

    def full_disk(self: SpoolDir, *args: Any, **kwargs: Any) -> list[bool]:
        raise jobq.SpoolError(errno.ENOSPC, "cannot enqueue: No space left on device")

    monkeypatch.setattr(SpoolDir, "publish", full_disk)
    with pytest.raises(jobq.SpoolError):
        worker.run_due(t0 + 10)  # 12:00:10 is due, and the disk is full
    monkeypatch.setattr(SpoolDir, "publish", real_publish)
    assert worker.run_due(t0 + 10.2) == 1  # the next round enqueues it after all
    assert tick_job_id("periodic.every10", _utc("2026-11-30T12:00:10")) in _pending_ids(spool_path)
