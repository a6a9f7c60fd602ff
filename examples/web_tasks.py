"""Jobs behind the web examples (FastAPI, aiohttp, Flask): run `jobq worker web_tasks`.

`build_report` is async and reports its progress, which the web apps show while it runs;
`send_welcome` is a sync job (it would call a blocking mail library) in a queue of its own.
"""

from __future__ import annotations

import os

import anyio

import jobq

#: Seconds each report page takes, to make progress visible (set it to 0 in tests).
PAGE_SECONDS = float(os.environ.get("REPORT_PAGE_SECONDS", "0.5"))


@jobq.job(retries=2, retry_delay=1.0, timeout=300)
async def build_report(user_id: int, pages: int) -> dict[str, object]:
    """Build a report page by page, reporting progress; return where it is."""
    job = jobq.current_job()
    for page in range(1, pages + 1):
        await anyio.sleep(PAGE_SECONDS)  # the real work: queries, rendering, uploading
        await job.progress(page, pages, f"rendered page {page}")
    return {"user_id": user_id, "pages": pages, "url": f"/files/report-{job.id}.pdf"}


@jobq.job(queue="mail", retries=3, retry_delay=5.0)
def send_welcome(email: str) -> str:
    """Send the welcome mail (a sync job: it runs in a worker thread)."""
    jobq.current_job().log.info("sending the welcome mail to %s", email)
    return f"welcome mail sent to {email}"


def job_status(info: dict[str, object]) -> dict[str, object]:
    """What the web apps return for a job: its state, progress, and result or error."""
    error = info.get("error")
    return {
        "id": info["id"],
        "state": info["state"],
        "progress": info.get("progress"),
        "result": info.get("result"),
        "error": None if not isinstance(error, dict) else f"{error['type']}: {error['message']}",
    }
