"""Jinja2 filters of the dashboard's templates: times, durations, JSON, numbers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("FILTERS", "ago", "duration", "number", "pretty", "when")


def when(ts: float | None) -> str:
    """Epoch seconds as local ``YYYY-MM-DD HH:MM:SS`` ("-" for None)."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def duration(seconds: float | None) -> str:
    """Seconds as a short human duration: ``850 ms``, ``12.5 s``, ``4m 05s``, ``3h 20m``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours < 48 else f"{hours // 24}d {hours % 24}h"


def ago(ts: float | None) -> str:
    """How long ago epoch time ``ts`` was (``"3.2 s ago"``)."""
    return "-" if ts is None else f"{duration(max(0.0, time.time() - ts))} ago"


def pretty(value: object) -> str:
    """A JSON value for reading: on one line when short, else indented."""
    try:
        text = orjson.dumps(value).decode()
        return (
            text if len(text) <= 100 else orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
        )
    except TypeError:
        return repr(value)


def number(value: int | None) -> str:
    """An integer with thousands separators."""
    return "-" if value is None else f"{value:,}"


FILTERS: dict[str, Callable[..., str]] = {
    "when": when,
    "duration": duration,
    "ago": ago,
    "pretty": pretty,
    "number": number,
}
