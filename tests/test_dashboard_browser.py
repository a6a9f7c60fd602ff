"""The dashboard in a real browser: ``jobq dashboard`` as a process, driven by headless Chromium.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make test`` installs them when it runs as
root). Elsewhere the test is skipped with the reason; in CI (``CI`` set) a missing browser is a
failure, so the test cannot silently stop running there.

Set ``JOBQ_DASHBOARD_SCREENSHOTS=DIR`` to save the screenshots of docs/dashboard.md
(overview.png, jobs.png, job.png, job-done.png) into DIR.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest
from conftest import jobq_command

import jobq

if TYPE_CHECKING:
    from collections.abc import Iterator

    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = os.environ.get("JOBQ_DASHBOARD_SCREENSHOTS")
WAIT = 20.0
TO = "\N{EN DASH}"  # as in "jobs 1-50 of 121"

_missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
if _missing and os.environ.get("CI"):
    pytest.fail(f"CI must run the browser test but {', '.join(_missing)} is missing", pytrace=False)
pytestmark = pytest.mark.skipif(
    bool(_missing),
    reason=f"no {' or '.join(_missing)}: apt-get install chromium chromium-driver (as root)",
)


@jobq.job(name="dash_browser.flaky")
def flaky(marker: str) -> str:
    """Fail until the file ``marker`` exists; then return "fixed"."""
    if not os.path.exists(marker):
        raise RuntimeError(f"no marker file at {marker} yet")
    return "fixed"


@jobq.job(name="dash_browser.work", queue="reports")
async def work(n: int) -> int:
    """Log a line, report progress, and return ``n * 2``."""
    job = jobq.current_job()
    job.log.info("working on %d", n)
    await job.progress(n % 4, 4, "chunks")
    return n * 2


def run_burst(spool: Path) -> None:
    """Run every runnable job in-process until none is left."""
    worker = jobq.Worker(jobq.Spool(spool), queues=["default", "reports"])
    anyio.run(functools.partial(worker.run, burst=True))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def dashboard_url(spool_path: Path, tmp_path: Path) -> Iterator[str]:
    """A real ``jobq dashboard --allow-actions`` process over ``spool_path``; its base URL."""
    run_burst(spool_path)  # creates the spool: the command refuses a directory that is none
    port = free_port()
    log = tmp_path / "dashboard.log"
    command = jobq_command(
        "dashboard", "--spool", str(spool_path), "--port", str(port), "--allow-actions"
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
                    assert response.status == 200
                break
            except OSError:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the dashboard did not come up"
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()  # by PID: only the process this fixture started
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, log.read_text()  # SIGTERM is a graceful stop


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Debian Chromium through its chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--disable-gpu", "--lang=en-US"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for_text(driver: WebDriver, css: str, text: str) -> str:
    """Wait until the element at ``css`` contains ``text``; its text."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    deadline = time.monotonic() + WAIT
    shown = ""
    while time.monotonic() < deadline:
        try:
            shown = driver.find_element(By.CSS_SELECTOR, css).text
        except (NoSuchElementException, StaleElementReferenceException):
            shown = ""
        if text in shown:
            return shown
        time.sleep(0.2)
    raise AssertionError(f"{css} never showed {text!r}; last: {shown!r} on {driver.current_url}")


def screenshot(driver: WebDriver, name: str) -> None:
    """Save a screenshot of the page for the docs when asked to."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        script = "return [document.body.scrollHeight, window.outerHeight - window.innerHeight]"
        page, chrome = driver.execute_script(script)
        driver.set_window_size(1280, min(max(int(page), 500), 1600) + int(chrome))
        driver.save_screenshot(os.path.join(SCREENSHOTS, name))
        driver.set_window_size(1280, 1000)


def test_retry_a_failed_job_from_the_browser(
    spool_path: Path, tmp_path: Path, dashboard_url: str, browser: WebDriver
) -> None:
    from selenium.webdriver.common.by import By

    marker = tmp_path / "marker"
    failing = flaky.enqueue_sync(str(marker)).id
    anyio.run(work.enqueue_many, [(n,) for n in range(30)])
    run_burst(spool_path)
    for n in range(3):
        work.enqueue_sync(n)

    browser.get(dashboard_url + "/")
    assert browser.title.startswith("Overview")
    # The overview refreshes itself: the failed job shows in the default queue's cell.
    wait_for_text(browser, '[data-cell="default/failed"]', "1")
    wait_for_text(browser, '[data-cell="reports/done"]', "30")
    wait_for_text(browser, '[data-cell="reports/pending"]', "3")
    work.enqueue_sync(3)  # the overview shows it without a reload
    wait_for_text(browser, '[data-cell="reports/pending"]', "4")
    screenshot(browser, "overview.png")

    browser.find_element(By.CSS_SELECTOR, '[data-cell="reports/done"]').click()
    wait_for_text(browser, "#summary", f"done jobs 1{TO}30 of 30")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")) == 30
    screenshot(browser, "jobs.png")

    browser.back()
    wait_for_text(browser, '[data-cell="default/failed"]', "1")
    browser.find_element(By.CSS_SELECTOR, '[data-cell="default/failed"]').click()
    wait_for_text(browser, "#summary", f"failed jobs 1{TO}1 of 1")
    browser.find_element(By.LINK_TEXT, failing).click()
    assert wait_for_text(browser, "#job-state", "failed") == "failed"
    traceback = browser.find_element(By.ID, "traceback").text
    assert traceback.startswith("Traceback (most recent call last):")
    assert "RuntimeError: no marker file at" in traceback
    screenshot(browser, "job.png")

    marker.touch()  # the cause is fixed: the next attempt succeeds
    browser.find_element(By.ID, "retry").click()
    wait_for_text(browser, "#flash", "Requeued")
    assert browser.find_element(By.ID, "job-state").text == "pending"
    assert browser.find_elements(By.ID, "cancel")  # a waiting job can be cancelled
    # The log tail follows what the job's log file gets.
    with (spool_path / "logs" / f"{failing}.log").open("a") as log:
        log.write("a line the page follows\n")
    wait_for_text(browser, "#log", "a line the page follows")

    run_burst(spool_path)
    # The page follows the job: it reloads itself when the state changes.
    wait_for_text(browser, "#job-state", "done")
    assert browser.find_element(By.ID, "result").text == '"fixed"'
    assert not browser.find_elements(By.ID, "retry")
    screenshot(browser, "job-done.png")

    browser.get(dashboard_url + "/")
    wait_for_text(browser, '[data-cell="default/done"]', "1")
    assert browser.find_element(By.CSS_SELECTOR, '[data-cell="default/failed"]').text == "0"
