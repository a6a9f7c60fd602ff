"""FastAPI: enqueue a job in a handler, then poll its status and progress.

    pip install 'jobq[examples]'
    jobq worker web_tasks --queues default,mail     # in examples/, in one terminal
    uvicorn fastapi_app:app                          # in examples/, in another
    curl -X POST 'localhost:8000/reports?user_id=7&pages=5'    # {"id": ..., "status_url": ...}
    curl localhost:8000/reports/ID          # state, progress {done, total, message}, result

Both processes use the same spool: `$JOBQ_SPOOL`, else `./jobq-spool`.
"""

from __future__ import annotations

import os
import sys

from fastapi import FastAPI, HTTPException

import jobq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import web_tasks

app = FastAPI(title="jobq + FastAPI")


@app.post("/reports", status_code=202)
async def create_report(user_id: int, pages: int = 5) -> dict[str, str]:
    """Enqueue a report; answers at once with the job's id and where to poll it."""
    handle = await web_tasks.build_report.enqueue(user_id, pages)
    return {"id": handle.id, "status_url": f"/reports/{handle.id}"}


@app.post("/signup", status_code=202)
async def signup(email: str) -> dict[str, str]:
    """Enqueue the welcome mail (a sync job) for a new user."""
    handle = await web_tasks.send_welcome.enqueue(email)
    return {"id": handle.id}


@app.get("/reports/{job_id}")
async def report_status(job_id: str) -> dict[str, object]:
    """The job's state, its latest progress, and its result or error once it ended."""
    try:
        info = await jobq.Spool().get(job_id).info()
    except (jobq.JobNotFound, jobq.InvalidName):
        raise HTTPException(status_code=404, detail=f"no job {job_id}") from None
    return web_tasks.job_status(info)
