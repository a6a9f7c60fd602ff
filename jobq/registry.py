"""Registered job names and the functions they run.

This is the worker's only link to application code: a job file names a function only through
this table, so a job file can never run arbitrary code. Importing an app module runs its
``@job`` decorators, which fill the table.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobq.errors import ConfigurationError
from jobq.names import check_job_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from jobq.limits import RateLimit
    from jobq.periodic import Schedule

__all__ = ("JobSpec", "import_apps", "lookup", "origin", "register", "registered_names")


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A registered job: its name, function and default options.

    Attributes:
        schedule: when it runs by itself (``cron=``/``every=``), or None.
        max_running: attempts that may run at once across the spool, or None.
        rate_limit: starts allowed per window across the spool, or None.
        result_ttl: seconds a ``done`` record is kept, or None for the worker's default.
    """

    name: str
    func: Callable[..., Any]
    queue: str
    retries: int
    retry_delay: float
    timeout: float | None
    priority: int
    schedule: Schedule | None = None
    max_running: int | None = None
    rate_limit: RateLimit | None = None
    result_ttl: float | None = None

    @property
    def is_async(self) -> bool:
        """True for ``async def`` functions, which run as tasks; others run in a thread."""
        return inspect.iscoroutinefunction(self.func)


_REGISTRY: dict[str, JobSpec] = {}


def register(spec: JobSpec) -> None:
    """Add ``spec`` to the registry.

    Raises:
        ConfigurationError: if another function is already registered under the same name.
    """
    check_job_name(spec.name)
    existing = _REGISTRY.get(spec.name)
    if existing is not None and origin(existing.func) != origin(spec.func):
        raise ConfigurationError(
            f"job name {spec.name!r} is already registered for another function; "
            "pass name=... to @job to tell them apart"
        )
    _REGISTRY[spec.name] = spec


def origin(func: Callable[..., Any]) -> tuple[str, str]:
    """Where ``func`` was defined (file, qualified name): the same function imported twice
    (as a script and as a module) has the same origin."""
    code = getattr(func, "__code__", None)
    where = code.co_filename if code is not None else ""
    return (where, getattr(func, "__qualname__", repr(func)))


def lookup(name: str) -> JobSpec | None:
    """The job registered under ``name``, or None."""
    return _REGISTRY.get(name)


def registered_names() -> list[str]:
    """All registered job names, sorted."""
    return sorted(_REGISTRY)


def import_apps(modules: Iterable[str]) -> None:
    """Import app modules (``pkg.tasks`` or ``path/to/tasks.py``) to register their jobs.

    The current directory is put on ``sys.path`` first, as ``python -m`` would (unless it was
    removed meanwhile).

    Raises:
        ConfigurationError: if a module cannot be imported, or raised (``sys.exit`` too) while
            importing.
    """
    with contextlib.suppress(FileNotFoundError):
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
    for module in modules:
        target = module
        if module.endswith(".py") or os.sep in module:
            directory, filename = os.path.split(os.path.abspath(module))
            if directory not in sys.path:
                sys.path.insert(0, directory)
            target = filename.removesuffix(".py")
        try:
            importlib.import_module(target)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import app module {module!r}: {exc}") from exc
        except Exception as exc:  # the app itself raised while importing: say what and where
            where = "" if isinstance(exc, SyntaxError) else _app_frame(exc)
            raise ConfigurationError(
                f"app module {module!r} raised {type(exc).__name__} while importing{where}: {exc}"
            ) from exc
        except SystemExit as exc:  # not a reason for jobq to exit as the app asked
            raise ConfigurationError(
                f"app module {module!r} called sys.exit({exc.code!r}) while importing"
                f"{_app_frame(exc)}"
            ) from exc


def _app_frame(exc: BaseException) -> str:
    """`` (at FILE:LINE)`` of the innermost frame of ``exc``'s traceback, or ''."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f" (at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})"
