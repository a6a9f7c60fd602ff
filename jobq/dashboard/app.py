"""The Starlette application: routes, templates, static files, security headers, sampling.

Everything a request needs lives in one ``Dashboard`` object on ``app.state``: the spool, the
per-process CSRF token, the throughput counters and the metrics registry. A background task
samples the spool's counts every few seconds so the throughput chart fills in while nobody
watches; a sample that fails is skipped and tried again, and one stuck on a hung mount is
abandoned at shutdown. A page that cannot read the spool answers 503 with the reason.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from typing import TYPE_CHECKING, cast

import anyio
import anyio.to_thread
import jinja2
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from jobq import inspect
from jobq.dashboard import actions, views
from jobq.dashboard.filters import FILTERS
from jobq.dashboard.metrics import SpoolCollector, metrics_registry
from jobq.dashboard.state import Dashboard, dashboard_of
from jobq.dashboard.throughput import Throughput
from jobq.errors import JobqError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from jobq.spool import SpoolDir

__all__ = ("SAMPLE_INTERVAL", "HostCheck", "SecurityHeaders", "build_app", "host_name")

HERE = os.path.dirname(os.path.abspath(__file__))
#: Seconds between the background samples of the spool's counts.
SAMPLE_INTERVAL = 5.0
_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]  # fmt: skip


class SecurityHeaders:
    """ASGI middleware: no framing, no inline scripts, no MIME sniffing, same-origin referrers.

    Args:
        app: the application to wrap.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, adding the headers to an HTTP response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HostCheck:
    """ASGI middleware: answer 400 unless the ``Host`` header names one of ``allowed``.

    Starlette's TrustedHostMiddleware cuts ``[::1]:8181`` at the first colon; this one keeps
    an IPv6 literal whole.

    Args:
        app: the application to wrap.
        allowed: the host names (without port) to accept, compared case-insensitively.
    """

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = {h.lower() for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on if its host is allowed, else answer 400."""
        if scope["type"] == "http" and host_name(scope) not in self.allowed:
            response = Response("invalid host header", 400, media_type="text/plain")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def host_name(scope: Scope) -> str:
    """The request's ``Host`` header without its port, lower-cased ("" if missing)."""
    headers: dict[bytes, bytes] = dict(scope.get("headers", []))
    raw = headers.get(b"host", b"").decode("latin-1").lower()
    if raw.startswith("["):
        return raw.partition("]")[0] + "]"
    return raw.partition(":")[0]


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.ChainableUndefined,  # a record or schedule missing a key shows blank
    )
    env.filters.update(FILTERS)
    return Jinja2Templates(env=env)


def build_app(
    spool: SpoolDir, allow_actions: bool, allowed_hosts: list[str] | None = None
) -> Starlette:
    """The dashboard application for ``spool`` (see ``jobq.dashboard.create_app``)."""
    throughput = Throughput()
    dashboard = Dashboard(
        spool=spool,
        allow_actions=allow_actions,
        csrf_token=secrets.token_urlsafe(32),
        throughput=throughput,
        registry=metrics_registry(SpoolCollector(spool, throughput)),
        templates=_templates(),
    )
    dashboard.templates.env.globals["dash"] = dashboard

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_sample_forever, dashboard)
            yield
            tg.cancel_scope.cancel()

    middleware = [Middleware(SecurityHeaders)]
    if allowed_hosts is not None:
        middleware.append(Middleware(HostCheck, allowed=allowed_hosts))
    app = Starlette(
        routes=_routes(),
        middleware=middleware,
        exception_handlers={
            HTTPException: _http_error,
            JobqError: _spool_error,
            OSError: _spool_error,
        },
        lifespan=lifespan,
    )
    app.state.dashboard = dashboard
    return app


def _routes() -> list[Route | Mount]:
    return [
        Route("/", views.overview, name="overview"),
        Route("/fragments/overview", views.overview_fragment, name="overview_fragment"),
        Route("/jobs", views.jobs, name="jobs"),
        Route("/jobs/{job_id}", views.job_page, name="job"),
        Route("/jobs/{job_id}/log", views.job_log, name="job_log"),
        Route("/jobs/{job_id}/retry", actions.retry, methods=["POST"], name="retry"),
        Route("/jobs/{job_id}/cancel", actions.cancel, methods=["POST"], name="cancel"),
        Route("/schedules", views.schedules, name="schedules"),
        Route("/api/status", views.api_status, name="api_status"),
        Route("/metrics", views.metrics, name="metrics"),
        Route("/favicon.ico", _no_icon, name="favicon"),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]


async def _no_icon(request: Request) -> Response:
    return Response(status_code=204)


async def _http_error(request: Request, exc: Exception) -> Response:
    error = cast("HTTPException", exc)
    if request.url.path.startswith(("/api/", "/metrics")) or request.url.path.endswith("/log"):
        body = orjson.dumps({"error": error.detail})
        return Response(body, error.status_code, error.headers, "application/json")
    templates = dashboard_of(request).templates
    context = {"status": error.status_code, "message": error.detail}
    return templates.TemplateResponse(
        request, "error.html", context, status_code=error.status_code, headers=error.headers
    )


async def _spool_error(request: Request, exc: Exception) -> Response:
    """A spool that cannot be read (permission denied, a failing mount) is a 503 with why."""
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return await _http_error(request, HTTPException(503, f"cannot read the spool: {reason}"))


async def _sample_forever(dashboard: Dashboard, interval: float = SAMPLE_INTERVAL) -> None:
    """Sample the counts every ``interval`` seconds, or less often where a sample is slow, so
    that sampling keeps to about a tenth of one core (a million records: ~0.5 s a sample)."""
    while True:
        start = time.monotonic()
        try:
            stats = await anyio.to_thread.run_sync(
                inspect.spool_stats, dashboard.spool, abandon_on_cancel=True
            )
        except (JobqError, OSError):
            pass  # a spool that does not answer now may answer at the next sample
        else:
            dashboard.throughput.observe(stats)
        await anyio.sleep(max(interval, 10 * (time.monotonic() - start)))
