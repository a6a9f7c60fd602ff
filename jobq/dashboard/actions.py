"""Retry and cancel buttons: POST only, only with ``--allow-actions``, only from the dashboard.

A request must pass every check, else it gets 403 and nothing changes:

1. the dashboard was started with ``allow_actions`` (``--allow-actions``);
2. where the browser says where the request comes from, it is this dashboard: a
   ``Sec-Fetch-Site`` header must be ``same-origin``; without one, an ``Origin`` header must
   equal the dashboard's own origin (scheme and the ``Host`` the request was sent to);
3. the form carries the per-process token (hidden field ``csrf_token``) that the dashboard's
   own pages embed; another site cannot read it, and it changes when the dashboard restarts.

A ``GET`` of these paths is 405. Each action is one call of ``jobq.admin.retry_job`` or
``jobq.admin.cancel_job``, the functions behind ``jobq retry`` and ``jobq cancel``, so a crash
in the middle leaves what those commands would leave: the job either moved or did not.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

import anyio.to_thread
from starlette.exceptions import HTTPException
from starlette.responses import RedirectResponse

from jobq import admin
from jobq.dashboard.state import dashboard_of
from jobq.errors import InvalidName, JobNotFound

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request

    from jobq.spool import SpoolDir

__all__ = ("CSRF_FIELD", "cancel", "retry")

#: The name of the hidden form field that carries the token.
CSRF_FIELD = "csrf_token"


async def retry(request: Request) -> RedirectResponse:
    """``POST /jobs/{job_id}/retry``: requeue a failed or cancelled job, then show it."""
    return await _act(request, admin.retry_job, "retried", "not-retried")


async def cancel(request: Request) -> RedirectResponse:
    """``POST /jobs/{job_id}/cancel``: cancel a waiting or running job, then show it."""
    return await _act(request, admin.cancel_job, "cancelled", "not-cancelled")


async def _act(
    request: Request, action: Callable[[SpoolDir, str], bool], done: str, skipped: str
) -> RedirectResponse:
    dash = dashboard_of(request)
    if not dash.allow_actions:
        raise HTTPException(
            403, "this dashboard is read-only: start it with --allow-actions to retry or cancel"
        )
    _check_same_origin(request)
    async with request.form(max_files=0, max_fields=10) as form:
        token = form.get(CSRF_FIELD)
    if not isinstance(token, str) or not hmac.compare_digest(token, dash.csrf_token):
        raise HTTPException(403, "missing or stale form token: reload the page and try again")
    job_id = request.path_params["job_id"]
    try:
        changed = await anyio.to_thread.run_sync(action, dash.spool, job_id)
    except (JobNotFound, InvalidName):
        raise HTTPException(404, f"no job {job_id} in this spool") from None
    return RedirectResponse(f"/jobs/{job_id}?did={done if changed else skipped}", 303)


def _check_same_origin(request: Request) -> None:
    """Refuse a request that the browser says comes from another site.

    ``Sec-Fetch-Site`` is the browser's own verdict, right behind a reverse proxy too; only a
    browser that does not send it has its ``Origin`` compared with the ``Host`` it asked for.
    """
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        if site != "same-origin":
            raise HTTPException(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
        return
    origin = request.headers.get("origin")
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    if origin is not None and origin != own:
        raise HTTPException(403, f"cross-site request refused (Origin: {origin})")
