"""The web dashboard (``jobq dashboard``, extra ``jobq[dashboard]``).

A Starlette application, served by uvicorn, that renders Jinja2 templates from the spool as
``jobq status`` reads it: counts, workers, jobs by state and queue, one job with its log, the
periodic schedules, ``GET /api/status`` and ``GET /metrics``. It never imports the app's code.

It is read-only unless started with ``allow_actions=True`` (``--allow-actions``); then its
retry and cancel buttons call the same ``jobq.admin`` functions as ``jobq retry`` and
``jobq cancel``, so a crash halfway leaves exactly what those commands would leave: every
move is one rename in the spool, and the dashboard itself keeps nothing on disk.

This module imports neither Starlette nor uvicorn, so the CLI can ask ``missing_extra()``
before it imports them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

    from starlette.applications import Starlette

    from jobq.decorator import Spool
    from jobq.spool import SpoolDir

__all__ = (
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "EXTRA_MODULES",
    "create_app",
    "is_spool",
    "missing_extra",
    "serve",
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8181
#: The modules that the ``dashboard`` extra installs.
EXTRA_MODULES = ("starlette", "uvicorn", "jinja2", "prometheus_client", "multipart")
_LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def missing_extra() -> list[str]:
    """The modules of the ``dashboard`` extra that are not installed (empty when all are)."""
    return [name for name in EXTRA_MODULES if importlib.util.find_spec(name) is None]


def is_spool(spool: SpoolDir) -> bool:
    """Whether ``spool`` holds a spool (its format marker), without creating anything."""
    from jobq.layout import FORMAT_FILE

    return os.path.exists(spool.path(FORMAT_FILE))


def create_app(
    spool: SpoolDir | Spool | str | os.PathLike[str],
    allow_actions: bool = False,
    *,
    allowed_hosts: list[str] | None = None,
) -> Starlette:
    """The dashboard as an ASGI application.

    Args:
        spool: the spool to show: a path, a ``jobq.Spool`` or a low-level ``SpoolDir``.
        allow_actions: offer retry and cancel buttons (POST, protected against cross-site
            requests); without it every POST is refused with 403.
        allowed_hosts: accept only requests whose ``Host`` header is one of these names
            (a defence against DNS rebinding); None accepts any.

    Raises:
        ModuleNotFoundError: if the ``dashboard`` extra is not installed.
    """
    from jobq.dashboard.app import build_app

    return build_app(_spool_dir(spool), allow_actions, allowed_hosts)


def serve(
    spool: SpoolDir | Spool | str | os.PathLike[str],
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    allow_actions: bool = False,
) -> None:
    """Serve the dashboard with uvicorn until interrupted (Ctrl-C or SIGTERM).

    When ``host`` is a loopback address, requests must name a loopback host too, so a web
    page elsewhere cannot reach the dashboard through DNS rebinding.

    Raises:
        JobqError: if it cannot listen on ``host:port`` (the port is taken, say).
        ModuleNotFoundError: if the ``dashboard`` extra is not installed.
    """
    import uvicorn

    hosts = ["127.0.0.1", "localhost", "[::1]"] if host in _LOOPBACK else None
    app = create_app(spool, allow_actions, allowed_hosts=hosts)
    sock = _listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    mode = "actions allowed" if allow_actions else "read-only"
    print(f"jobq dashboard on http://{shown}:{port}/ ({mode}); Ctrl-C stops it", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    with sock, _signals_end_quietly():
        uvicorn.Server(config).run(sockets=[sock])


@contextlib.contextmanager
def _signals_end_quietly() -> Iterator[None]:
    """Make a stop by SIGINT or SIGTERM a normal return (exit 0).

    uvicorn shuts down gracefully on these signals and then raises the signal again for the
    handler it found installed; with ours installed, that second delivery does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore(sig: int, frame: FrameType | None) -> None:
    """A signal handler that does nothing."""


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, so that a taken port is one clear error."""
    from jobq.errors import JobqError

    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise JobqError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise JobqError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _spool_dir(spool: SpoolDir | Spool | str | os.PathLike[str]) -> SpoolDir:
    from jobq.config import spool_dir
    from jobq.decorator import Spool

    if isinstance(spool, Spool):
        return spool.dir
    if isinstance(spool, str | os.PathLike):
        return spool_dir(spool)
    return spool
