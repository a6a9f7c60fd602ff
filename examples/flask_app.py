"""Flask (sync code): enqueue with ``enqueue_sync`` in a view, poll with ``info_sync``.

    pip install 'jobq[examples]'
    jobq worker web_tasks --queues default,mail     # in examples/, in one terminal
    flask --app flask_app run                        # in examples/, in another
    curl -X POST localhost:5000/signup -d email=ada@example.org
    curl localhost:5000/jobs/ID

The same works in Django views: the ``_sync`` methods are for code without an event loop.
"""

from __future__ import annotations

import os
import sys

from flask import Flask, abort, request

import jobq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import web_tasks

app = Flask(__name__)


@app.post("/signup")
def signup() -> tuple[dict[str, str], int]:
    """Enqueue the welcome mail for the posted ``email``; answers at once."""
    handle = web_tasks.send_welcome.enqueue_sync(request.form["email"])
    return {"id": handle.id, "status_url": f"/jobs/{handle.id}"}, 202


@app.post("/reports")
def create_report() -> tuple[dict[str, str], int]:
    """Enqueue a report (an async job: a sync producer can enqueue it all the same)."""
    user_id, pages = int(request.form["user_id"]), int(request.form.get("pages", 5))
    handle = web_tasks.build_report.enqueue_sync(user_id, pages)
    return {"id": handle.id, "status_url": f"/jobs/{handle.id}"}, 202


@app.get("/jobs/<job_id>")
def job_status(job_id: str) -> dict[str, object]:
    """The job's state, its latest progress, and its result or error once it ended."""
    try:
        info = jobq.Spool().get(job_id).info_sync()
    except (jobq.JobNotFound, jobq.InvalidName):
        abort(404, f"no job {job_id}")
    return web_tasks.job_status(info)
