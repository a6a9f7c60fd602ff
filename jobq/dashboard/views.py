"""The dashboard's pages and JSON endpoints; all read-only (the actions are in ``actions``).

Every endpoint here is a plain function, so Starlette runs it in a worker thread and reading
the spool never blocks the event loop. They read through ``jobq.inspect`` and ``jobq.admin``,
as ``jobq status`` does, and through ``jobq.dashboard.listing`` for pages of jobs.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse, Response

from jobq import admin, inspect
from jobq import layout as L
from jobq.dashboard import state as shared
from jobq.dashboard.listing import PER_PAGE, oldest_pending, page_jobs
from jobq.dashboard.metrics import render
from jobq.errors import InvalidName, JobNotFound
from jobq.names import check_job_id, check_queue

if TYPE_CHECKING:
    from starlette.requests import Request

    from jobq.dashboard.state import Dashboard
    from jobq.spool import SpoolDir

__all__ = (
    "FLASH",
    "api_status",
    "job_log",
    "job_page",
    "jobs",
    "metrics",
    "overview",
    "overview_fragment",
    "schedules",
)

#: Bytes of a job's log shown when its page opens.
LOG_TAIL = 64 * 1024
#: Bytes of new log text one poll returns at most.
LOG_CHUNK = 256 * 1024
_STATE = re.compile(r"[a-z_]{1,32}")
#: The messages an action's redirect may ask the job page to show (never text from the URL).
FLASH = {
    "retried": "Requeued: the job is pending again.",
    "not-retried": "Not retried: only failed or cancelled jobs can be retried.",
    "cancelled": "Cancelled (a running job stops at its worker's next check).",
    "not-cancelled": "Not cancelled: the job had already finished.",
}


def overview(request: Request) -> Response:
    """``GET /``: counts per queue and state, workers, throughput, oldest pending job."""
    dash = shared.dashboard_of(request)
    return dash.templates.TemplateResponse(request, "overview.html", _overview_context(dash))


def overview_fragment(request: Request) -> Response:
    """``GET /fragments/overview``: the live part of the overview, for its refresh poll."""
    dash = shared.dashboard_of(request)
    return dash.templates.TemplateResponse(request, "_overview.html", _overview_context(dash))


def _overview_context(dash: Dashboard) -> dict[str, Any]:
    stats = inspect.spool_stats(dash.spool)
    dash.throughput.observe(stats)
    queues: dict[str, dict[str, int]] = stats["queues"]
    states = list(dict.fromkeys(s for counts in queues.values() for s in counts))
    now = time.time()
    oldest = {}
    for queue in queues:
        enqueued = oldest_pending(dash.spool, queue)
        oldest[queue] = None if enqueued is None else max(0.0, now - enqueued)
    return {
        "stats": stats,
        "states": states or list(inspect.STATES),
        "totals": {s: sum(c.get(s, 0) for c in queues.values()) for s in states},
        "oldest": oldest,
        "chart": dash.throughput.chart(),
        "is_spool": os.path.exists(dash.spool.path(L.FORMAT_FILE)),
        "now": now,
    }


def jobs(request: Request) -> Response:
    """``GET /jobs?state=S&queue=Q&q=TEXT&offset=N``: one page of jobs, newest or next first.

    A search that is exactly a known job id goes straight to that job's page.
    """
    dash = shared.dashboard_of(request)
    params = request.query_params
    state = params.get("state") or L.PENDING
    if not _STATE.fullmatch(state):
        raise HTTPException(404, f"no state {state!r}")
    queue = params.get("queue") or None
    if queue is not None:
        queue = _queue_or_404(queue)
    search = params.get("q", "").strip()[:200]
    if search and _known_job(dash.spool, search):
        return RedirectResponse(f"/jobs/{search}", status_code=303)
    page = page_jobs(dash.spool, state, queue, offset=_int(params.get("offset")), search=search)
    tabs = list(inspect.STATES)
    if state not in tabs:
        tabs.append(state)
    context = {
        "page": page,
        "state": state,
        "queue": queue,
        "search": search,
        "queues": dash.spool.queues(),
        "tabs": tabs,
        "per_page": PER_PAGE,
    }
    return dash.templates.TemplateResponse(request, "jobs.html", context)


def job_page(request: Request) -> Response:
    """``GET /jobs/{job_id}``: args, result or error and traceback, progress, log tail."""
    dash = shared.dashboard_of(request)
    job_id = request.path_params["job_id"]
    try:
        info = inspect.job_info(dash.spool, job_id, details=True)
    except (JobNotFound, InvalidName):
        raise HTTPException(404, f"no job {job_id} in this spool") from None
    text, offset, cut = _log_tail(dash.spool, info["id"])
    context = {
        "job": info,
        "finished": info["state"] in (*L.FINISHED_STATES, L.INVALID),
        "percent": _percent(info.get("progress")),
        "log": text,
        "log_offset": offset,
        "log_cut": cut,
        "flash": FLASH.get(request.query_params.get("did", "")),
    }
    return dash.templates.TemplateResponse(request, "job.html", context)


def job_log(request: Request) -> Response:
    """``GET /jobs/{job_id}/log?offset=N``: log text after byte N, the state and progress.

    Returns JSON ``{"text", "offset", "reset", "state", "progress", "percent"}``; ``reset``
    says the log shrank (it was purged) and ``text`` is its tail instead.
    """
    dash = shared.dashboard_of(request)
    job_id = request.path_params["job_id"]
    try:
        state = admin.job_state(dash.spool, job_id)
    except (JobNotFound, InvalidName):
        raise HTTPException(404, f"no job {job_id} in this spool") from None
    text, offset, reset = _log_since(dash.spool, job_id, _int(request.query_params.get("offset")))
    progress = _progress(dash.spool, job_id)
    body = {
        "text": text,
        "offset": offset,
        "reset": reset,
        "state": state,
        "progress": progress,
        "percent": _percent(progress),
    }
    return Response(orjson.dumps(body), media_type="application/json")


def schedules(request: Request) -> Response:
    """``GET /schedules``: the periodic jobs that workers registered, with their next tick."""
    dash = shared.dashboard_of(request)
    context = {
        "supported": shared.schedule_list_function() is not None,
        "schedules": shared.schedule_rows(dash.spool),
    }
    return dash.templates.TemplateResponse(request, "schedules.html", context)


def api_status(request: Request) -> Response:
    """``GET /api/status``: exactly what ``jobq status --json`` prints."""
    dash = shared.dashboard_of(request)
    stats = inspect.spool_stats(dash.spool)
    dash.throughput.observe(stats)
    return Response(orjson.dumps(stats), media_type="application/json")


def metrics(request: Request) -> Response:
    """``GET /metrics``: the Prometheus text format (see ``jobq.dashboard.metrics``)."""
    registry = shared.dashboard_of(request).registry
    return Response(render(registry), media_type=CONTENT_TYPE_LATEST)


# -- helpers -------------------------------------------------------------------------------


def _queue_or_404(queue: str) -> str:
    try:
        return check_queue(queue)
    except InvalidName:
        raise HTTPException(404, f"no queue {queue!r}") from None


def _known_job(spool: SpoolDir, text: str) -> bool:
    try:
        admin.locate(spool, check_job_id(text))
    except (JobNotFound, InvalidName):
        return False
    return True


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def _percent(progress: dict[str, Any] | None) -> float | None:
    if not progress or not isinstance(progress.get("total"), int | float) or not progress["total"]:
        return None
    done = progress.get("done")
    return max(0.0, min(100.0, 100.0 * float(done) / progress["total"])) if done else 0.0


def _progress(spool: SpoolDir, job_id: str) -> dict[str, Any] | None:
    try:
        with open(spool.progress_path(job_id), "rb") as f:
            value = orjson.loads(f.read())
    except (FileNotFoundError, orjson.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _log_tail(spool: SpoolDir, job_id: str) -> tuple[str, int, bool]:
    """The last ``LOG_TAIL`` bytes of the log, the log's size, and whether it was cut."""
    try:
        with open(spool.log_path(job_id), "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - LOG_TAIL)
            f.seek(start)
            data = f.read(size - start)
    except FileNotFoundError:
        return "", 0, False
    if start:
        data = data.partition(b"\n")[2]  # drop the partial first line
    return data.decode("utf-8", errors="replace"), size, start > 0


def _log_since(spool: SpoolDir, job_id: str, offset: int) -> tuple[str, int, bool]:
    """Log text from byte ``offset`` (at most ``LOG_CHUNK``), the new offset, and a reset flag."""
    try:
        with open(spool.log_path(job_id), "rb") as f:
            size = f.seek(0, os.SEEK_END)
            if offset > size:
                text, end, _ = _log_tail(spool, job_id)
                return text, end, True
            f.seek(offset)
            data = f.read(LOG_CHUNK)
    except FileNotFoundError:
        return "", 0, offset > 0
    data = _whole_chars(data)
    return data.decode("utf-8", errors="replace"), offset + len(data), False


def _whole_chars(data: bytes) -> bytes:
    """``data`` without a UTF-8 character cut at its end (the next poll reads it whole)."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # the lead byte of the last character
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if need <= back else data[:-back]
    return data
