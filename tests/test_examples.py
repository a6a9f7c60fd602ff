"""Every example in examples/ runs, each against a real ``jobq worker`` process.

The quickstart (``make run``) starts its own worker; the others get one started here from
``examples/`` (``worker_process(..., cwd=EXAMPLES)``), as their docstrings tell a reader to.
The web apps are driven in-process: FastAPI through Starlette's TestClient (on asyncio and
trio), aiohttp through its test server on 127.0.0.1, Flask through its test client.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
from conftest import EXAMPLES, run_jobq

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import ModuleType

    from conftest import WorkerProcess

# Example file -> the test that runs it. tasks.py is the app module quickstart.py enqueues to;
# web_tasks.py holds the jobs of the three web apps.
COVERED = {
    "quickstart.py": "test_quickstart",
    "tasks.py": "test_quickstart",
    "web_tasks.py": "test_fastapi_example",
    "fastapi_app.py": "test_fastapi_example",
    "aiohttp_app.py": "test_aiohttp_example",
    "flask_app.py": "test_flask_example",
    "trio_app.py": "test_trio_example",
    "periodic.py": "test_periodic_example",
    "pipeline.py": "test_pipeline_example",
}


def run_python(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS...`` in examples/ with ``env`` added to the environment."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=EXAMPLES,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


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
    lines = out.splitlines()
    header = next(line.split() for line in lines if line.startswith("queue "))
    rows = {
        line.split()[0]: dict(zip(header[1:], map(int, line.split()[1:]), strict=True))
        for line in lines
        if line[:4] in ("defa", "cpu ")
    }
    assert {q: {k: n for k, n in counts.items() if n} for q, counts in rows.items()} == {
        "default": {"done": 100},
        "cpu": {"done": 100, "failed": 1},
    }
    assert {"pending", "scheduled", "running", "cancelled"} <= set(header)
    assert "workers: 1 live" in out

    (spool,) = tmp_path.glob("jobq-demo-*")
    assert f"spool left at {spool}" in out
    assert (spool / "jobq-spool.json").is_file()


# -- the web apps ----------------------------------------------------------------------------


@pytest.fixture
def web_worker(
    spool_path: Path,
    worker_process: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> WorkerProcess:
    """``jobq worker web_tasks`` run from examples/, with report pages of 0.2 s."""
    monkeypatch.setenv("REPORT_PAGE_SECONDS", "0.2")
    return worker_process(
        "web_tasks", "--queues", "default,mail", "--spool", str(spool_path), cwd=EXAMPLES
    )


def example(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import ``examples/NAME.py`` as the worker does: by its module name."""
    monkeypatch.syspath_prepend(str(EXAMPLES))
    return importlib.import_module(name)


def poll(get: Callable[[], dict[str, Any]], timeout: float = 30) -> list[dict[str, Any]]:
    """Call ``get`` until the job it reports has ended; every answer, in order."""
    seen = [get()]
    deadline = time.monotonic() + timeout
    while seen[-1]["state"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, seen[-1]
        time.sleep(0.02)
        seen.append(get())
    return seen


def check_report(seen: list[dict[str, Any]], job_id: str, user_id: int) -> None:
    """The polled states of a 3-page report: progress while it ran, then its result."""
    final = seen[-1]
    assert final["state"] == "done", final
    assert final["result"] == {"user_id": user_id, "pages": 3, "url": f"/files/report-{job_id}.pdf"}
    assert final["error"] is None
    assert final["progress"]["done"] == 3
    assert final["progress"]["total"] == 3
    assert final["progress"]["message"] == "rendered page 3"
    # Polled while it ran: progress page by page, never going back.
    partial = [s["progress"]["done"] for s in seen if s["state"] == "running" and s["progress"]]
    assert partial, [s["state"] for s in seen]
    assert partial == sorted(partial)
    assert partial[0] < 3


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_fastapi_example(
    web_worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    from fastapi.testclient import TestClient

    app = example("fastapi_app", monkeypatch).app
    with TestClient(app, backend=backend) as client:  # type: ignore[arg-type]
        created = client.post("/reports", params={"user_id": 7, "pages": 3})
        assert created.status_code == 202
        job_id = created.json()["id"]
        assert created.json()["status_url"] == f"/reports/{job_id}"
        check_report(poll(lambda: client.get(f"/reports/{job_id}").json()), job_id, 7)

        mail = client.post("/signup", params={"email": "ada@example.org"}).json()["id"]
        final = poll(lambda: client.get(f"/reports/{mail}").json())[-1]
        assert final["result"] == "welcome mail sent to ada@example.org"

        assert client.get("/reports/0000000000000000").status_code == 404
        assert client.get("/reports/..%2Fetc").status_code == 404
    assert web_worker.stop() == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # aiohttp runs on asyncio only
async def test_aiohttp_example(web_worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio
    from aiohttp.test_utils import TestClient, TestServer

    app = example("aiohttp_app", monkeypatch).make_app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        created = await client.post("/reports", json={"user_id": 8, "pages": 3})
        assert created.status == 202
        job_id = (await created.json())["id"]
        seen: list[dict[str, Any]] = []
        with anyio.fail_after(30):
            while not seen or seen[-1]["state"] != "done":
                await anyio.sleep(0.02)
                seen.append(await (await client.get(f"/reports/{job_id}")).json())
        check_report(seen, job_id, 8)
        assert (await client.get("/reports/0000000000000000")).status == 404
    assert web_worker.stop() == 0


def test_flask_example(web_worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    client = example("flask_app", monkeypatch).app.test_client()
    created = client.post("/signup", data={"email": "grace@example.org"})
    assert created.status_code == 202
    job_id = created.get_json()["id"]
    final = poll(lambda: client.get(f"/jobs/{job_id}").get_json())[-1]
    assert final == {
        "id": job_id,
        "state": "done",
        "progress": None,
        "result": "welcome mail sent to grace@example.org",
        "error": None,
    }

    report = client.post("/reports", data={"user_id": "9", "pages": "3"}).get_json()["id"]
    check_report(poll(lambda: client.get(f"/jobs/{report}").get_json()), report, 9)
    assert client.get("/jobs/0000000000000000").status_code == 404
    assert web_worker.stop() == 0


# -- trio ----------------------------------------------------------------------------------


def test_trio_example(spool_path: Path, worker_process: Callable[..., WorkerProcess]) -> None:
    worker = worker_process(
        "trio_app", "--backend", "trio", "--spool", str(spool_path), cwd=EXAMPLES
    )
    done = run_python(str(EXAMPLES / "trio_app.py"), JOBQ_SPOOL=str(spool_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "fetched on trio: {'https://example.org/a': 2100, 'https://example.org/bb': 2200}",
        "never_done failed with TimeoutError: job trio_app.never_done timed out after 0.5 s",
    ]
    assert worker.stop() == 0


# -- periodic jobs and a dependency chain --------------------------------------------------


def test_periodic_example(
    spool_path: Path,
    tmp_path: Path,
    worker_process: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Not imported here: a periodic job registered in the test process would tick in the
    # in-process workers of other tests.
    beats = tmp_path / "heartbeat.log"
    monkeypatch.setenv("HEARTBEAT_EVERY", "1")
    monkeypatch.setenv("HEARTBEAT_FILE", str(beats))
    monkeypatch.setenv("UPLOADS_DIR", str(tmp_path / "uploads"))  # were the nightly tick due
    worker = worker_process(
        "periodic", "--processes", "2", "--spool", str(spool_path), cwd=EXAMPLES
    )
    deadline = time.monotonic() + 30
    while len(beats.read_text().splitlines() if beats.exists() else []) < 3:
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.05)

    listed = run_jobq("schedules", "--json", "--spool", str(spool_path))
    assert listed.returncode == 0, listed.stderr
    schedules = {s["name"]: s for s in json.loads(listed.stdout)}
    assert set(schedules) == {"periodic.heartbeat", "periodic.clean_uploads"}
    assert schedules["periodic.clean_uploads"]["tz"] == "Europe/Madrid"
    assert schedules["periodic.heartbeat"]["last_job_id"]
    assert worker.stop() == 0

    # Two worker processes, and each tick ran once: one heartbeat line per tick's job.
    records = [json.loads(p.read_bytes()) for p in (spool_path / "done" / "default").iterdir()]
    ticks = [r["id"] for r in records if r["name"] == "periodic.heartbeat"]
    assert len(beats.read_text().splitlines()) == len(ticks) >= 3


def test_periodic_jobs_also_run_as_plain_calls(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    for name, age in (("old.bin", 2 * 86400), ("new.bin", 60)):
        (uploads / name).write_bytes(b"x")
        os.utime(uploads / name, (time.time() - age, time.time() - age))
    done = run_python(
        "-c",
        "import periodic; print(periodic.clean_uploads())",
        UPLOADS_DIR=str(uploads),
        JOBQ_SPOOL=str(tmp_path / "spool"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert [p.name for p in uploads.iterdir()] == ["new.bin"]


def test_pipeline_example(spool_path: Path, worker_process: Callable[..., WorkerProcess]) -> None:
    worker = worker_process("pipeline", "--spool", str(spool_path), cwd=EXAMPLES)
    done = run_python(str(EXAMPLES / "pipeline.py"), JOBQ_SPOOL=str(spool_path))
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = done.stdout.splitlines()
    assert first == "report: {'pages': 3, 'words': 21}"
    found = re.fullmatch(
        r"count_words was not run: job (\w+) was cancelled: dependency (\w+) ended failed",
        second,
    )
    assert found, second
    orphan, broken = found.groups()
    status = run_jobq("status", orphan, "--json", "--spool", str(spool_path))
    info = json.loads(status.stdout)
    assert info["state"] == "cancelled"
    assert info["error"]["type"] == "jobq.DependencyFailed"
    failed = run_jobq("status", broken, "--json", "--spool", str(spool_path))
    assert failed.returncode == 1  # a failed job
    assert json.loads(failed.stdout)["error"]["type"] == "ConnectionError"
    assert worker.stop() == 0
