"""What the requests of one dashboard share, and where they find it.

Nothing here touches the disk except ``schedule_rows``, which reads the schedules that workers
registered (through ``jobq.inspect.schedule_list`` where this jobq has it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from jobq import inspect
from jobq.errors import JobqError

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from starlette.requests import Request
    from starlette.templating import Jinja2Templates

    from jobq.dashboard.throughput import Throughput
    from jobq.spool import SpoolDir

__all__ = ("Dashboard", "dashboard_of", "schedule_list_function", "schedule_rows")

_SCHEDULES_TTL = 10.0


@dataclass
class Dashboard:
    """What every request of one dashboard shares.

    Attributes:
        spool: the spool shown.
        allow_actions: whether retry and cancel are offered.
        csrf_token: the per-process secret that every action form must send back.
        throughput: finished-jobs counters and chart (see ``jobq.dashboard.throughput``).
        registry: the Prometheus registry behind ``/metrics``.
        templates: the Jinja2 templates.
    """

    spool: SpoolDir
    allow_actions: bool
    csrf_token: str
    throughput: Throughput
    registry: CollectorRegistry
    templates: Jinja2Templates
    _schedules: tuple[float, bool] = field(default=(float("-inf"), False), init=False)

    def has_schedules(self) -> bool:
        """Whether the spool has periodic jobs to show (cached for a few seconds)."""
        at, found = self._schedules
        now = time.monotonic()
        if now - at > _SCHEDULES_TTL:
            found = bool(schedule_rows(self.spool))
            self._schedules = (now, found)
        return found


def schedule_list_function() -> Any:
    """``jobq.inspect.schedule_list`` where this jobq has it, else None."""
    return getattr(inspect, "schedule_list", None)


def schedule_rows(spool: SpoolDir) -> list[dict[str, Any]]:
    """The periodic jobs workers registered, or [] where jobq cannot list them."""
    listing = schedule_list_function()
    if listing is None:
        return []
    try:
        return list(listing(spool))
    except (JobqError, OSError, ValueError):
        return []


def dashboard_of(request: Request) -> Dashboard:
    """The ``Dashboard`` of the application serving ``request``."""
    return cast("Dashboard", request.app.state.dashboard)
