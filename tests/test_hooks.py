"""Hooks: ``jobq.on_start``/``on_success``/``on_failure``/``on_retry`` and ``jobq.JobEvent``.

The hooks live in ``tests/apps/observed.py`` (registered when it is imported, as an app's are)
and write one JSON line per event to the file the job names in its ``out`` argument.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from apps import observed

import jobq

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import WorkerProcess


def events(out: Path) -> list[dict[str, Any]]:
    """The events the hooks wrote, in the order they were written."""
    if not out.exists():
        return []
    return [json.loads(line) for line in out.read_text().splitlines()]


def by_kind(out: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events(out):
        found.setdefault(event["kind"], []).append(event)
    return found


async def burst(spool: Path) -> None:
    await jobq.Worker(jobq.Spool(spool)).run(burst=True)


@pytest.mark.anyio
async def test_each_hook_hears_its_outcome(spool_path: Path, anyio_backend: str) -> None:
    out = spool_path.parent / "events.jsonl"
    good = await observed.ok.enqueue(21, out=str(out))
    bad = await observed.boom.enqueue("kaput", out=str(out))
    asked = await observed.again.enqueue(out=str(out))
    await burst(spool_path)
    assert await good.result(timeout=5) == 42
    with pytest.raises(jobq.JobFailed):
        await bad.result(timeout=5)
    assert await asked.result(timeout=5) == "second time lucky"

    kinds = by_kind(out)
    starts = sorted((e["name"], e["attempt"]) for e in kinds["start"])
    assert starts == [
        ("observed.again", 1), ("observed.again", 2), ("observed.boom", 1),
        ("observed.boom", 2), ("observed.ok", 1),
    ]  # fmt: skip
    assert all(e["duration"] is None for e in kinds["start"])

    (success_ok, success_again) = sorted(kinds["success"], key=lambda e: e["name"], reverse=True)
    assert (success_ok["id"], success_ok["result"], success_ok["args"]) == (good.id, 42, [21])
    assert success_ok["queue"] == "default"
    assert success_ok["spool"] == str(spool_path)
    assert success_ok["duration"] >= 0
    assert success_ok["error"] is None
    assert success_ok["worker"]
    assert (success_again["id"], success_again["attempt"]) == (asked.id, 2)

    # A failed attempt that is retried fires on_retry, not on_failure.
    retries = {e["name"]: e for e in kinds["retry"]}
    assert set(retries) == {"observed.boom", "observed.again"}
    assert retries["observed.boom"]["attempt"] == 1
    assert retries["observed.boom"]["error"]["type"] == "apps.observed.Boom"
    assert retries["observed.boom"]["retry_delay"] > 0
    assert retries["observed.again"]["error"] is None  # it asked with jobq.Retry
    assert retries["observed.again"]["retry_delay"] == pytest.approx(0.05)

    (failure,) = kinds["failure"]
    assert (failure["id"], failure["attempt"], failure["max_attempts"]) == (bad.id, 2, 2)
    assert failure["error"]["type"] == "apps.observed.Boom"
    assert failure["error"]["message"] == "kaput"
    assert "raise Boom(message)" in failure["error"]["traceback"]
    assert failure["duration"] >= 0
    # Sync hooks ran in a thread of their own, async ones on the event loop.
    assert failure["thread"] == "jobq-sync-job"
    assert kinds["retry"][0]["thread"] == "MainThread"


@pytest.mark.anyio
async def test_a_cancelled_job_fires_no_outcome_hook(spool_path: Path, anyio_backend: str) -> None:
    out = spool_path.parent / "events.jsonl"
    handle = await observed.sleep.enqueue(30, out=str(out))
    worker = jobq.Worker(jobq.Spool(spool_path))
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.run)
        with anyio.fail_after(10):
            while await handle.state() != "running":
                await anyio.sleep(0.01)
        await handle.cancel()
        with pytest.raises(jobq.JobCancelled):
            await handle.result(timeout=10)
        worker.stop()
    assert [e["kind"] for e in events(out)] == ["start"]


@pytest.mark.anyio
async def test_a_hook_that_raises_is_logged_and_changes_nothing(
    spool_path: Path, anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    out = spool_path.parent / "events.jsonl"
    handle = await observed.ok.enqueue(1, out=str(out), hook="raise")
    with caplog.at_level(logging.INFO, logger="jobq"):
        await burst(spool_path)
    assert await handle.result(timeout=5) == 2
    assert await handle.state() == "done"
    (record,) = [r for r in caplog.records if r.name == "jobq.hooks"]
    assert record.levelno == logging.ERROR
    message = record.getMessage()
    assert "apps.observed.raising_hook" in message
    assert f"observed.ok[{handle.id}]" in message
    assert "raised" in message
    assert record.exc_info is not None
    assert "the hook itself is broken" in str(record.exc_info[1])
    assert [e["kind"] for e in events(out)] == ["start", "success"]  # the other hooks ran


@pytest.mark.anyio
@pytest.mark.parametrize("hang", ["hang_sync", "hang_async"])
async def test_a_hung_hook_is_abandoned_after_its_timeout(
    spool_path: Path, anyio_backend: str, caplog: pytest.LogCaptureFixture, hang: str
) -> None:
    out = spool_path.parent / "events.jsonl"
    handle = await observed.ok.enqueue(3, out=str(out), hook=hang)
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger="jobq"):
        await burst(spool_path)
    took = time.monotonic() - started
    assert await handle.result(timeout=1) == 6
    # The burst worker waited for the hook for its timeout, not for the 5 s it hangs.
    assert observed.HANG_TIMEOUT <= took < 4, took
    (record,) = [r for r in caplog.records if r.name == "jobq.hooks"]
    assert f"apps.observed.hanging_{hang.split('_')[1]}_hook" in record.getMessage()
    assert "still running after 0.5 s: abandoned" in record.getMessage()


@pytest.mark.anyio
async def test_hooks_never_hold_back_jobs_or_outcomes(spool_path: Path, anyio_backend: str) -> None:
    out = spool_path.parent / "events.jsonl"
    observed.GATE.clear()
    worker = jobq.Worker(jobq.Spool(spool_path), concurrency=2)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            gated = await observed.ok.enqueue(5, out=str(out), hook="gate")
            # The gated hook is blocked, yet the outcome is there and other jobs keep flowing.
            assert await gated.result(timeout=10) == 10
            later = [await observed.ok.enqueue(n) for n in range(20)]
            assert [await h.result(timeout=10) for h in later] == [2 * n for n in range(20)]
            assert "released" not in out.read_text()
            observed.GATE.set()
            with anyio.fail_after(10):
                while "released" not in out.read_text():
                    await anyio.sleep(0.01)
            worker.stop()
    finally:
        observed.GATE.set()
    (released,) = [e for e in events(out) if "released" in e]
    assert released["released"] is True


def test_decorators_take_sync_and_async_functions_bare_or_with_a_timeout() -> None:
    def sync_hook(event: jobq.JobEvent) -> None:
        """Never fires: no job is named like this test."""

    async def async_hook(event: jobq.JobEvent) -> None:
        """Never fires either."""

    assert jobq.on_start(sync_hook) is sync_hook
    assert jobq.on_retry(timeout=3)(async_hook) is async_hook
    with pytest.raises(jobq.ConfigurationError, match="timeout"):
        jobq.on_failure(timeout=0)
    with pytest.raises(jobq.ConfigurationError, match="decorates a function"):
        jobq.on_success(42)  # type: ignore[call-overload]
    fields = set(jobq.JobEvent.__dataclass_fields__)
    assert {"id", "name", "queue", "attempt", "args", "kwargs", "result", "error"} <= fields
    assert {"duration", "retry_delay"} <= fields
    event = jobq.JobEvent(kind="start", id="x", name="n", queue="q", attempt=1, max_attempts=1)
    with pytest.raises(AttributeError):
        event.id = "y"  # type: ignore[misc]


def test_hooks_in_a_real_worker_process(
    spool_path: Path, worker_process: Callable[..., WorkerProcess]
) -> None:
    out = spool_path.parent / "events.jsonl"
    good = observed.ok.enqueue_sync(4, out=str(out), hook="raise")
    bad = observed.boom.enqueue_sync("from a process", out=str(out))
    worker = worker_process("apps.observed", "--spool", str(spool_path), "--burst")
    assert worker.wait() == 0, worker.output()
    assert good.result_sync(timeout=1) == 8
    with pytest.raises(jobq.JobFailed):
        bad.result_sync(timeout=1)
    kinds = by_kind(out)
    assert sorted(kinds) == ["failure", "retry", "start", "success"]
    assert kinds["failure"][0]["error"]["message"] == "from a process"
    log = worker.output()
    assert f"hook apps.observed.raising_hook for job observed.ok[{good.id}] (success) raised" in log
    assert "RuntimeError: the hook itself is broken" in log  # its traceback is in the log


# -- the examples in docs/hooks.md ---------------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs" / "hooks.md"


def docs_example(name: str) -> str:
    """The Python block that follows ``<!-- example: NAME -->`` in docs/hooks.md."""
    text = DOCS.read_text()
    marker = f"<!-- example: {name} -->"
    assert marker in text, marker
    block = text.split(marker, 1)[1].split("```python\n", 1)[1]
    return block.split("\n```", 1)[0] + "\n"


def run_example(
    worker_process: Callable[..., WorkerProcess], spool: Path, hook_file: Path, code: str
) -> WorkerProcess:
    hook_file.write_text(code)
    worker = worker_process("apps.observed", str(hook_file), "--spool", str(spool), "--burst")
    assert worker.wait() == 0, worker.output()
    return worker


def test_docs_file_example(
    spool_path: Path,
    tmp_path: Path,
    worker_process: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audit = tmp_path / "audit.jsonl"
    monkeypatch.setenv("JOBQ_AUDIT_LOG", str(audit))
    good = observed.ok.enqueue_sync(10)
    bad = observed.boom.enqueue_sync("disk on fire")
    worker = run_example(worker_process, spool_path, tmp_path / "audit_hook.py",
                         docs_example("audit"))  # fmt: skip
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    print("audit hook wrote:", *lines, sep="\n  ")
    assert [(x["event"], x["id"]) for x in lines if x["id"] == good.id] == [("success", good.id)]
    assert [x["event"] for x in lines if x["id"] == bad.id] == ["retry", "failure"]
    (failure,) = [x for x in lines if x["event"] == "failure"]
    assert failure["error"] == "apps.observed.Boom: disk on fire"
    assert "jobq.hooks" not in worker.output()  # no hook complained


def test_docs_slack_example_posts_to_a_local_webhook(
    spool_path: Path,
    tmp_path: Path,
    worker_process: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import http.server
    import threading

    received: list[dict[str, Any]] = []

    class Webhook(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(
                {"path": self.path, "type": self.headers["Content-Type"],
                 "body": json.loads(self.rfile.read(length))}
            )  # fmt: skip
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX"
        monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
        bad = observed.boom.enqueue_sync("the printer is on fire")
        observed.ok.enqueue_sync(1)  # a success: no message
        run_example(worker_process, spool_path, tmp_path / "slack_hook.py",
                    docs_example("slack"))  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    print("slack webhook received:", *received, sep="\n  ")
    (post,) = received
    assert post["path"] == "/services/T000/B000/XXXX"
    assert post["type"] == "application/json"
    text = post["body"]["text"]
    assert "observed.boom" in text
    assert bad.id in text
    assert "apps.observed.Boom: the printer is on fire" in text
    assert "after 2 attempt(s)" in text


def test_docs_sentry_example_with_a_stand_in_sdk(
    spool_path: Path,
    tmp_path: Path,
    worker_process: Callable[..., WorkerProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No network and no sentry_sdk here: a stand-in module records what the hook sends.
    stub = tmp_path / "stub"
    stub.mkdir()
    calls = tmp_path / "sentry-calls.jsonl"
    (stub / "sentry_sdk.py").write_text(
        "import json, os\n"
        "def init(**options):\n"
        "    pass\n"
        "def capture_message(message, level=None, **scope):\n"
        "    with open(os.environ['STUB_SENTRY_OUT'], 'a') as f:\n"
        "        f.write(json.dumps({'message': message, 'level': level, **scope}) + '\\n')\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(stub))
    monkeypatch.setenv("STUB_SENTRY_OUT", str(calls))
    bad = observed.boom.enqueue_sync("no more coffee")
    run_example(worker_process, spool_path, tmp_path / "sentry_hook.py", docs_example("sentry"))
    (call,) = [json.loads(line) for line in calls.read_text().splitlines()]
    print("sentry stand-in got:", call)
    assert call["level"] == "error"
    assert "observed.boom failed: apps.observed.Boom: no more coffee" in call["message"]
    assert call["tags"] == {"jobq.job": "observed.boom", "jobq.queue": "default"}
    job = call["contexts"]["job"]
    assert (job["id"], job["attempt"], job["args"]) == (bad.id, 2, ["no more coffee"])
    assert "raise Boom(message)" in job["traceback"]
