"""``jobq bench``: it measures, reports in both forms, and leaves the spool as it found it.

Only that the numbers exist and are positive is checked here: speed claims live in
docs/performance.md, not in timed assertions.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from click.testing import CliRunner
from conftest import run_jobq

from jobq.cli import main as cli

if TYPE_CHECKING:
    from pathlib import Path

ENQUEUE_KEYS = {"single_durable", "batched_durable", "single_non_durable", "batched_non_durable"}
LATENCY_KEYS = {"pickup_p50", "pickup_p99", "round_trip_p50", "round_trip_p99", "samples"}


def _entries(spool: Path) -> set[str]:
    return {str(p.relative_to(spool)) for p in spool.rglob("*")}


def test_bench_json_has_every_measurement(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    done = CliRunner().invoke(cli, ["bench", "--jobs", "40", "--json", "--spool", str(spool)])
    assert done.exit_code == 0, done.output
    results = json.loads(done.stdout)
    assert results["jobs"] == 40
    assert results["durable"] is True
    assert results["processes"] == 1
    assert results["wakeups"] in ("inotify", "inotify+polling", "polling")
    assert set(results["enqueue_per_s"]) == ENQUEUE_KEYS
    assert all(rate > 0 for rate in results["enqueue_per_s"].values())
    assert results["jobs_per_s"] > 0
    assert set(results["latency_ms"]) == LATENCY_KEYS
    latency = results["latency_ms"]
    assert 0 < latency["round_trip_p50"] <= latency["round_trip_p99"]
    assert 0 <= latency["pickup_p50"] <= latency["pickup_p99"]
    assert latency["samples"] >= 20
    # It created the spool for itself, so it removed it again.
    assert not spool.exists()


def test_bench_report_with_processes_cleans_up(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (spool / "queues").mkdir(parents=True)
    (spool / "mine.txt").write_text("keep me")
    before = _entries(spool)
    done = run_jobq(
        "bench", "--jobs", "40", "--no-durable", "--processes", "2", "--spool", str(spool),
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for label in ("enqueue", "processing", "pickup", "round trip"):
        assert label in done.stdout
    assert "non-durable, 2 worker process(es)" in done.stdout
    assert "jobq bench" in done.stderr  # the progress bar
    # Its scratch directory (and the workers' registrations in it) are gone.
    assert _entries(spool) == before
    assert not [n for n in os.listdir(spool) if n.startswith(".bench-")]


def test_bench_without_json_prints_no_json(tmp_path: Path) -> None:
    done = CliRunner().invoke(cli, ["bench", "--jobs", "20", "--spool", str(tmp_path / "s")])
    assert done.exit_code == 0, done.output
    assert done.stdout.lstrip().startswith("spool")
    assert "{" not in done.stdout
