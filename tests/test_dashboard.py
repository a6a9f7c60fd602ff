"""The web dashboard over HTTP (Starlette's TestClient) against a spool of real jobs.

The spool is filled through the public API and run by an in-process burst worker; every
assertion is about what a user sees: counts in the overview's cells, rows and pager links on
the jobs page, a job's args, result, traceback and log, ``/api/status``, ``/metrics``, and
which POSTs change a job.
"""

from __future__ import annotations

import functools
import html
import json
import re
import socket
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

import jobq
from jobq import inspect, joblist
from jobq.cli import main
from jobq.config import spool_dir
from jobq.dashboard import create_app, listing
from jobq.dashboard.throughput import Throughput

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

DEFAULT_DONE = 121  # 120 adds and one chatty job
PENDING = 4
TO = "\N{EN DASH}"  # as in "jobs 1-50 of 121"


@jobq.job(name="dash.add")
async def add(x: int, y: int) -> int:
    """Add two numbers."""
    return x + y


@jobq.job(name="dash.fail")
def fail(message: str) -> None:
    """Always raise ``ValueError(message)`` (in a worker thread)."""
    raise ValueError(message)


@jobq.job(name="dash.chatty")
async def chatty(word: str) -> str:
    """Log a line with a non-ASCII word, report progress 3/4, and return ``word``."""
    job = jobq.current_job()
    job.log.info("chatty says %s", word)
    await job.progress(3, 4, "almost there")
    return word


@jobq.job(name="dash.mail", queue="mail")
def mail(to: str) -> str:
    """Pretend to send a mail."""
    return f"sent to {to}"


def run_burst(spool: Path) -> None:
    """Run every runnable job of the default and mail queues in-process, then return."""
    worker = jobq.Worker(jobq.Spool(spool), queues=["default", "mail"])
    anyio.run(functools.partial(worker.run, burst=True))


class Filled:
    """A spool with known contents and the ids worth looking at.

    Attributes:
        path: the spool directory.
        failed: ids of the two failed jobs.
        chatty: id of the job that logged and reported progress.
        pending: ids of the jobs left pending in ``default``.
        scheduled: id of the job scheduled an hour ahead.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        anyio.run(add.enqueue_many, [(i, 1) for i in range(120)])
        self.failed = [fail.enqueue_sync("boom one").id, fail.enqueue_sync("boom two").id]
        self.chatty = chatty.enqueue_sync("héllo").id
        for to in ("a@x", "b@x", "c@x"):
            mail.enqueue_sync(to)
        run_burst(path)
        self.pending = [add.enqueue_sync(i, 2).id for i in range(PENDING)]
        self.scheduled = add.options(delay=3600).enqueue_sync(0, 0).id


@pytest.fixture
def filled(spool_path: Path) -> Filled:
    """The spool of this test, filled (see ``Filled``)."""
    return Filled(spool_path)


@pytest.fixture
def client(filled: Filled) -> Iterator[TestClient]:
    """A read-only dashboard over the filled spool."""
    with TestClient(create_app(filled.path)) as c:
        yield c


@pytest.fixture
def actions_client(filled: Filled) -> Iterator[TestClient]:
    """A dashboard over the filled spool started with ``allow_actions=True``."""
    with TestClient(create_app(filled.path, allow_actions=True)) as c:
        yield c


def cells(page: str) -> dict[str, str]:
    """The overview's count cells: ``{"queue/state": "shown number"}``."""
    return dict(re.findall(r'data-cell="([^"]+)"\s+href="[^"]*">([^<]*)</a>', page))


def job_links(page: str) -> list[str]:
    """The job ids linked from the rows of a jobs page, in order."""
    return re.findall(r'<td class="mono"><a href="/jobs/(\w+)">', page)


def csrf_token(page: str) -> str:
    """The hidden CSRF token of an action form on ``page``."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no action form on the page"
    return match.group(1)


def text_of(page: str, element_id: str) -> str:
    """The unescaped text inside the element with ``id=element_id`` (no nested tags)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.DOTALL)
    assert match, f"no element #{element_id}"
    return html.unescape(match.group(1))


# -- overview ------------------------------------------------------------------------------


def test_overview_shows_every_count(client: TestClient, filled: Filled) -> None:
    page = client.get("/")
    assert page.status_code == 200
    shown = cells(page.text)
    stats = inspect.spool_stats(spool_dir(filled.path))
    expected = {
        f"{queue}/{state}": f"{count:,}"
        for queue, counts in stats["queues"].items()
        for state, count in counts.items()
    }
    assert shown == expected
    assert shown["default/done"] == str(DEFAULT_DONE)
    assert shown["default/failed"] == "2"
    assert shown["default/pending"] == str(PENDING)
    assert shown["default/scheduled"] == "1"
    assert shown["mail/done"] == "3"
    assert "No live workers." in page.text
    # The live part is refreshed from a fragment that shows the same cells.
    assert cells(client.get("/fragments/overview").text) == expected


def test_overview_renders_states_and_counts_it_does_not_know(
    client: TestClient, filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = inspect.spool_stats

    def with_more(spool: Any) -> dict[str, Any]:
        stats = real(spool)
        for counts in stats["queues"].values():
            counts["waiting"] = 7
        return {**stats, "invalid": 3}

    monkeypatch.setattr(inspect, "spool_stats", with_more)
    page = client.get("/").text
    assert cells(page)["default/waiting"] == "7"
    assert cells(page)["mail/waiting"] == "7"
    assert '<th class="num">waiting</th>' in page
    assert "3 quarantined file(s)" in page
    assert client.get("/api/status").json()["invalid"] == 3


def test_a_spool_that_cannot_be_read_is_503_with_the_reason(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(spool: Any) -> dict[str, Any]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(inspect, "spool_stats", refused)
    page = client.get("/")
    assert page.status_code == 503
    assert "cannot read the spool: Permission denied" in text_of(page.text, "error-message")
    assert client.get("/api/status").json() == {"error": "cannot read the spool: Permission denied"}


def test_oldest_pending_age_is_shown_per_queue(client: TestClient) -> None:
    page = client.get("/").text
    row = re.search(r">default</a></th>(.*?)</tr>", page, re.DOTALL)
    assert row
    assert re.search(r'<td class="num">[\d.]+ (ms|s)</td>', row.group(1))
    mail_row = re.search(r">mail</a></th>(.*?)</tr>", page, re.DOTALL)
    assert mail_row
    assert '<td class="num">-</td>' in mail_row.group(1)


# -- jobs pages ----------------------------------------------------------------------------


def test_jobs_pages_walk_every_done_job_newest_first(client: TestClient, filled: Filled) -> None:
    seen: list[str] = []
    url = "/jobs?state=done&queue=default"
    for expected_rows in (50, 50, DEFAULT_DONE - 100):
        page = client.get(url).text
        ids = job_links(page)
        assert len(ids) == expected_rows
        first = len(seen) + 1
        summary = " ".join(text_of(page, "summary").split())
        assert summary == f"done jobs {first}{TO}{len(seen) + expected_rows} of {DEFAULT_DONE}"
        seen += ids
        more = re.search(r'id="next" href="([^"]+)"', page)
        if len(seen) < DEFAULT_DONE:
            assert more
            url = html.unescape(more.group(1))
        else:
            assert more is None
    done_dir = filled.path / "done" / "default"
    assert seen == sorted((p.stem for p in done_dir.iterdir()), reverse=True)


def test_jobs_page_of_all_queues_and_of_waiting_states(client: TestClient, filled: Filled) -> None:
    done = client.get("/jobs?state=done&offset=100").text
    assert " ".join(text_of(done, "summary").split()) == f"done jobs 101{TO}124 of 124"
    pending = client.get("/jobs?state=pending").text
    assert job_links(pending) == filled.pending  # run order: first in, first out
    scheduled = client.get("/jobs?state=scheduled").text
    assert job_links(scheduled) == [filled.scheduled]
    failed = client.get("/jobs?state=failed").text
    assert sorted(job_links(failed)) == sorted(filled.failed)
    assert "<strong>ValueError</strong>: boom" in failed
    empty = client.get("/jobs?state=cancelled").text
    assert job_links(empty) == []
    assert "No cancelled jobs." in empty


def test_jobs_held_by_dependencies_are_listed_from_their_directory(
    client: TestClient, filled: Filled
) -> None:
    queue = filled.path / "queues" / "default"
    (queue / "waiting").mkdir(exist_ok=True)
    held = next(p for p in (queue / "pending").iterdir() if filled.pending[-1] in p.name)
    held.rename(queue / "waiting" / held.name)  # where a job waits for its after= jobs
    page = client.get("/jobs?state=waiting").text
    assert job_links(page) == [filled.pending[-1]]
    assert job_links(client.get("/jobs?state=pending").text) == filled.pending[:-1]


def test_states_listed_elsewhere_come_from_joblist(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str | None, str | None, int | None]] = []

    def list_jobs(spool: Any, *, state: str | None, queue: str | None, limit: int | None) -> Any:
        asked.append((state, queue, limit))
        return [
            {"file": f"bad-{i}.json", "reason": f"not valid JSON #{i}", "state": "invalid",
             "quarantined_at": 1_800_000_000.0, "id": None, "name": None, "queue": None}
            for i in range(60)
        ]  # fmt: skip

    monkeypatch.setattr(joblist, "list_jobs", list_jobs)
    page = client.get("/jobs?state=invalid").text
    assert asked == [("invalid", None, 51)]
    assert page.count("not valid JSON #") == 50
    assert "bad-0.json" in page
    assert 'id="next"' in page


def test_jobs_page_reads_only_the_files_on_the_page(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    real_open = open

    def counting_open(path: str, *args: Any, **kwargs: Any) -> Any:
        opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(listing, "open", counting_open, raising=False)
    page = client.get("/jobs?state=done").text
    assert len(job_links(page)) == 50
    assert len(opened) == 50


def test_search_by_name_and_by_id(client: TestClient, filled: Filled) -> None:
    by_name = client.get("/jobs", params={"state": "done", "q": "dash.mail"}).text
    assert len(job_links(by_name)) == 3
    assert "3 matches for “dash.mail”" in html.unescape(by_name)
    upper = client.get("/jobs", params={"state": "done", "q": "DASH.CHATTY"}).text
    assert job_links(upper) == [filled.chatty]
    part = filled.chatty[-8:]
    assert job_links(client.get("/jobs", params={"state": "done", "q": part}).text) == [
        filled.chatty
    ]
    nothing = client.get("/jobs", params={"state": "failed", "q": "dash.add"}).text
    assert job_links(nothing) == []
    exact = client.get("/jobs", params={"q": filled.failed[0]}, follow_redirects=False)
    assert exact.status_code == 303
    assert exact.headers["location"] == f"/jobs/{filled.failed[0]}"


def test_a_name_search_reads_a_bounded_number_of_files(filled: Filled) -> None:
    spool = spool_dir(filled.path)
    first = listing.page_jobs(spool, "done", search="no such job", budget=30)
    assert first.rows == []
    assert first.scanned_to == 30
    assert first.next_offset == 30
    everything = listing.page_jobs(spool, "done", search="dash.mail")
    assert [row["name"] for row in everything.rows] == ["dash.mail"] * 3
    assert everything.next_offset is None
    assert everything.scanned_to == everything.total == DEFAULT_DONE + 3
    # The mails are the newest records: a search further on finds none of them.
    assert listing.page_jobs(spool, "done", offset=30, search="dash.mail").rows == []


def test_bad_state_queue_or_job_is_404(client: TestClient) -> None:
    assert client.get("/jobs?state=../etc").status_code == 404
    assert client.get("/jobs?state=done&queue=../../x").status_code == 404
    assert client.get("/jobs/0123456789abcdef").status_code == 404
    assert client.get("/jobs/not-an-id!").status_code == 404
    missing = client.get("/jobs/0123456789abcdef/log")
    assert missing.status_code == 404
    assert "no job 0123456789abcdef" in missing.json()["error"]


# -- one job -------------------------------------------------------------------------------


def test_failed_job_page_shows_args_error_and_traceback(client: TestClient, filled: Filled) -> None:
    page = client.get(f"/jobs/{filled.failed[0]}").text
    assert text_of(page, "job-state") == "failed"
    assert json.loads(text_of(page, "args")) == ["boom one"]
    assert "<strong>ValueError</strong>: boom one" in page
    traceback = text_of(page, "traceback")
    assert traceback.startswith("Traceback (most recent call last):")
    assert "raise ValueError(message)" in traceback
    assert 'id="retry"' not in page  # read-only: no buttons


def test_done_job_page_shows_result_progress_and_log(client: TestClient, filled: Filled) -> None:
    page = client.get(f"/jobs/{filled.chatty}").text
    assert text_of(page, "job-state") == "done"
    assert json.loads(text_of(page, "result")) == "héllo"
    assert "chatty says héllo" in text_of(page, "log")
    assert re.search(r'<progress id="progress" max="100" value="75.0"', page)
    assert "3/4" in page
    assert "almost there" in page


def test_log_endpoint_returns_what_follows_an_offset(client: TestClient, filled: Filled) -> None:
    log = filled.path / "logs" / f"{filled.chatty}.log"
    size = log.stat().st_size
    whole = client.get(f"/jobs/{filled.chatty}/log?offset=0").json()
    assert whole["text"] == log.read_text()
    assert whole["offset"] == size
    assert whole["state"] == "done"
    assert whole["percent"] == 75.0
    assert client.get(f"/jobs/{filled.chatty}/log?offset={size}").json()["text"] == ""
    # A character cut in half at the end waits for the next poll.
    with log.open("ab") as f:
        f.write("é".encode()[:1])
    cut = client.get(f"/jobs/{filled.chatty}/log?offset={size}").json()
    assert (cut["text"], cut["offset"]) == ("", size)
    # A log that shrank (purged and started again) is sent whole, flagged as a reset.
    shrunk = client.get(f"/jobs/{filled.chatty}/log?offset={size + 100}").json()
    assert shrunk["reset"] is True
    assert "chatty says" in shrunk["text"]


# -- JSON and metrics ----------------------------------------------------------------------


def test_api_status_is_jobq_status_json(client: TestClient, filled: Filled) -> None:
    served = client.get("/api/status")
    assert served.headers["content-type"] == "application/json"
    printed = CliRunner().invoke(main, ["status", "--json", "--spool", str(filled.path)])
    assert printed.exit_code == 0, printed.output
    assert served.json() == json.loads(printed.stdout)
    assert served.json() == json.loads(json.dumps(inspect.spool_stats(spool_dir(filled.path))))


def scrape(client: TestClient) -> dict[str, dict[tuple[str, ...], float]]:
    """``/metrics`` parsed: sample name -> {label values: value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = tuple(sample.labels[k] for k in sorted(sample.labels))
            samples.setdefault(sample.name, {})[key] = sample.value
    return samples


def test_metrics_per_queue_and_state(client: TestClient, filled: Filled) -> None:
    metrics = scrape(client)
    stats = inspect.spool_stats(spool_dir(filled.path))
    assert metrics["jobq_jobs"] == {
        (queue, state): float(count)
        for queue, counts in stats["queues"].items()
        for state, count in counts.items()
    }
    assert metrics["jobq_jobs"][("default", "done")] == DEFAULT_DONE
    assert metrics["jobq_workers"] == {(): 0.0}
    ages = metrics["jobq_oldest_pending_age_seconds"]
    assert set(ages) == {("default",), ("mail",)}
    assert 0 < ages[("default",)] < 60
    assert ages[("mail",)] == 0
    # Counters start at zero with the dashboard and count the jobs seen finishing.
    assert set(metrics["jobq_jobs_finished_total"].values()) == {0.0}
    mail.enqueue_sync("d@x")
    fail.enqueue_sync("boom three")
    run_burst(filled.path)
    finished = scrape(client)["jobq_jobs_finished_total"]
    # (labels sort by name: queue, then state)
    assert finished[("mail", "done")] == 1
    assert finished[("default", "failed")] == 1
    assert finished[("default", "done")] == PENDING  # the pending adds ran too


def test_throughput_counts_growth_only() -> None:
    now = [1000.0]
    meter = Throughput(window=300, bucket=60, clock=lambda: now[0])

    def observe(done: int, failed: int) -> None:
        meter.observe({"queues": {"q": {"pending": 0, "done": done, "failed": failed}}})

    observe(100, 5)  # the first sample only sets the baseline
    now[0] += 30
    observe(110, 5)
    now[0] += 60
    observe(90, 7)  # a purge of done records counts nothing
    now[0] += 60
    observe(95, 7)
    assert meter.totals() == {("q", "done"): 15, ("q", "failed"): 2}
    chart = meter.chart()
    assert chart.buckets == (0, 0, 10, 2, 5)
    assert chart.peak == 10
    assert chart.per_minute(300) == pytest.approx(17 * 60 / 150)


# -- actions -------------------------------------------------------------------------------


def test_read_only_dashboard_refuses_actions(client: TestClient, filled: Filled) -> None:
    job = filled.failed[0]
    assert client.get(f"/jobs/{job}/retry").status_code == 405
    refused = client.post(f"/jobs/{job}/retry", data={"csrf_token": "anything"})
    assert refused.status_code == 403
    assert "--allow-actions" in refused.text
    assert client.post(f"/jobs/{filled.pending[0]}/cancel").status_code == 403
    assert client.get(f"/jobs/{job}/log").json()["state"] == "failed"
    assert client.get(f"/jobs/{filled.pending[0]}/log").json()["state"] == "pending"


def test_actions_need_the_token_and_the_same_origin(
    actions_client: TestClient, filled: Filled
) -> None:
    job = filled.failed[0]
    page = actions_client.get(f"/jobs/{job}").text
    token = csrf_token(page)
    url = f"/jobs/{job}/retry"
    assert actions_client.get(url).status_code == 405
    assert actions_client.post(url).status_code == 403
    assert actions_client.post(url, data={"csrf_token": token[:-1] + "x"}).status_code == 403
    cross = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
    assert actions_client.post(url, data={"csrf_token": token}, headers=cross).status_code == 403
    evil = {"Origin": "https://evil.example"}
    assert actions_client.post(url, data={"csrf_token": token}, headers=evil).status_code == 403
    site = {"Sec-Fetch-Site": "same-site"}
    assert actions_client.post(url, data={"csrf_token": token}, headers=site).status_code == 403
    assert actions_client.get(f"/jobs/{job}/log").json()["state"] == "failed"  # nothing moved


def test_retry_and_cancel_with_the_token(actions_client: TestClient, filled: Filled) -> None:
    job = filled.failed[0]
    page = actions_client.get(f"/jobs/{job}").text
    assert 'id="retry"' in page
    token = csrf_token(page)
    own = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    done = actions_client.post(f"/jobs/{job}/retry", data={"csrf_token": token}, headers=own)
    assert done.status_code == 200  # followed the redirect to the job page
    assert text_of(done.text, "job-state") == "pending"
    assert "Requeued" in text_of(done.text, "flash")
    assert 'id="cancel"' in done.text
    again = actions_client.post(
        f"/jobs/{filled.chatty}/retry", data={"csrf_token": token}, follow_redirects=False
    )
    assert again.status_code == 303
    assert again.headers["location"] == f"/jobs/{filled.chatty}?did=not-retried"
    # Behind a reverse proxy the Origin is the proxy's; the browser still says same-origin.
    proxied = {"Origin": "https://jobs.example", "Sec-Fetch-Site": "same-origin"}
    cancelled = actions_client.post(
        f"/jobs/{job}/cancel", data={"csrf_token": token}, headers=proxied
    )
    assert text_of(cancelled.text, "job-state") == "cancelled"
    assert inspect.job_info(spool_dir(filled.path), job)["state"] == "cancelled"
    missing = actions_client.post("/jobs/0123456789abcdef/cancel", data={"csrf_token": token})
    assert missing.status_code == 404


# -- schedules, hosts, headers -------------------------------------------------------------


def test_schedules_page_without_and_with_periodic_jobs(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(inspect, "schedule_list", raising=False)
    page = client.get("/schedules").text
    assert 'id="no-schedules"' in page
    assert 'href="/schedules"' in page  # the page being shown stays in the menu
    assert 'href="/schedules"' not in client.get("/").text

    def schedule_list(spool: Any) -> list[dict[str, Any]]:
        return [
            {
                "name": "app.cleanup", "queue": "default", "schedule": "*/5 * * * *",
                "tz": "UTC", "next_tick": 1_800_000_000.0, "last_tick": None,
                "last_job_id": "abc123", "last_state": "done",
            }
        ]  # fmt: skip

    monkeypatch.setattr(inspect, "schedule_list", schedule_list, raising=False)
    page = client.get("/schedules").text
    assert "app.cleanup" in page
    assert "*/5 * * * *" in page
    assert 'href="/jobs/abc123"' in page


def test_loopback_only_hosts_and_security_headers(filled: Filled) -> None:
    app = create_app(filled.path, allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8181") as local:
        page = local.get("/")
        assert page.status_code == 200
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        rebound = local.get("/", headers={"Host": "evil.example"})
        assert rebound.status_code == 400
        assert local.get("/", headers={"Host": "LOCALHOST:8181"}).status_code == 200
    v6 = create_app(filled.path, allowed_hosts=["[::1]"])
    with TestClient(v6, base_url="http://[::1]:8181") as local:
        assert local.get("/api/status").status_code == 200
        assert local.get("/", headers={"Host": "[::1]"}).status_code == 200
        assert local.get("/", headers={"Host": "[::2]:8181"}).status_code == 400


# -- the command ---------------------------------------------------------------------------


def test_command_without_the_extra_says_how_to_install_it(
    filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jobq.dashboard.missing_extra", lambda: ["starlette"])
    result = CliRunner().invoke(main, ["dashboard", "--spool", str(filled.path)])
    assert result.exit_code == 1
    assert result.stderr == "jobq: the dashboard needs the extra: pip install 'jobq[dashboard]'\n"


def test_command_passes_its_options_to_serve(
    filled: Filled, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr("jobq.dashboard.serve", lambda *args: calls.append(args))
    options = ["--host", "0.0.0.0", "--port", "9999", "--allow-actions"]
    result = CliRunner().invoke(main, ["dashboard", *options, "--spool", str(filled.path)])
    assert result.exit_code == 0, result.output
    ((spool, host, port, allow),) = calls
    assert (spool.root, host, port, allow) == (str(filled.path), "0.0.0.0", 9999, True)
    nowhere = CliRunner().invoke(main, ["dashboard", "--spool", str(tmp_path / "nothing")])
    assert nowhere.exit_code == 1
    assert nowhere.stderr == f"jobq: no spool at {tmp_path / 'nothing'}\n"
    assert not (tmp_path / "nothing").exists()


def test_command_with_a_taken_port_says_so_in_one_line(filled: Filled) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main, ["dashboard", "--port", str(port), "--spool", str(filled.path)]
        )
    assert result.exit_code == 1
    assert result.stderr == f"jobq: cannot listen on 127.0.0.1:{port}: Address already in use\n"
