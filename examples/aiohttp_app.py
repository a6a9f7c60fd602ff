"""aiohttp: enqueue a job in a handler, then poll its status and progress.

pip install 'jobq[examples]'
jobq worker web_tasks --queues default,mail     # in examples/, in one terminal
python aiohttp_app.py                            # in examples/: serves 127.0.0.1:8080
curl -X POST localhost:8080/reports -d '{"user_id": 7, "pages": 5}'
curl localhost:8080/reports/ID
"""

from __future__ import annotations

import os
import sys

from aiohttp import web

import jobq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import web_tasks

routes = web.RouteTableDef()


@routes.post("/reports")
async def create_report(request: web.Request) -> web.Response:
    """Enqueue a report from a JSON body ``{"user_id": 7, "pages": 5}``."""
    body = await request.json()
    handle = await web_tasks.build_report.enqueue(int(body["user_id"]), int(body.get("pages", 5)))
    return web.json_response({"id": handle.id, "status_url": f"/reports/{handle.id}"}, status=202)


@routes.get("/reports/{job_id}")
async def report_status(request: web.Request) -> web.Response:
    """The job's state, its latest progress, and its result or error once it ended."""
    job_id = request.match_info["job_id"]
    try:
        info = await jobq.Spool().get(job_id).info()
    except (jobq.JobNotFound, jobq.InvalidName):
        raise web.HTTPNotFound(text=f"no job {job_id}") from None
    return web.json_response(web_tasks.job_status(info))


def make_app() -> web.Application:
    """The aiohttp application."""
    app = web.Application()
    app.add_routes(routes)
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=8080)
