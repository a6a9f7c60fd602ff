"""Process-wide settings: which spool to use and whether it is durable.

The spool is chosen by, in order: an explicit ``jobq.Spool(path)``, ``jobq.configure(spool=...)``,
the ``JOBQ_SPOOL`` environment variable, and ``./jobq-spool``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from jobq.errors import ConfigurationError

if TYPE_CHECKING:
    from jobq.spool import SpoolDir

__all__ = ("DEFAULT_SPOOL", "configure", "default_durable", "default_spool_path", "spool_dir")

DEFAULT_SPOOL = "./jobq-spool"

_configured_spool: str | None = None
_configured_durable: bool | None = None
_SPOOLS: dict[tuple[str, bool], SpoolDir] = {}


def configure(*, spool: str | os.PathLike[str] | None = None, durable: bool | None = None) -> None:
    """Set the default spool (and its durability) for this process.

    Args:
        spool: the spool directory used by ``@job`` functions that are not bound to a
            ``Spool``; None leaves the current choice.
        durable: fsync job files and outcomes (the default); None leaves the current choice.
    """
    global _configured_spool, _configured_durable
    if spool is not None:
        _configured_spool = os.fspath(spool)
    if durable is not None:
        _configured_durable = durable


def default_spool_path() -> str:
    """The spool path in force: configured, else ``$JOBQ_SPOOL``, else ``./jobq-spool``."""
    return _configured_spool or os.environ.get("JOBQ_SPOOL") or DEFAULT_SPOOL


def default_durable() -> bool:
    """Durability in force: configured, else ``$JOBQ_DURABLE`` (``0`` turns it off), else on.

    Raises:
        ConfigurationError: if ``JOBQ_DURABLE`` is not one of 0, 1, true, false, yes, no.
    """
    if _configured_durable is not None:
        return _configured_durable
    raw = os.environ.get("JOBQ_DURABLE", "1").strip().lower()
    if raw in ("1", "true", "yes", "on", ""):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"JOBQ_DURABLE={raw!r}: use 1 or 0")


def spool_dir(path: str | os.PathLike[str] | None = None, durable: bool | None = None) -> SpoolDir:
    """The (shared) low-level spool for ``path``, defaulting to the configured spool.

    One ``SpoolDir`` per path and durability, shared by producers, workers and the CLI of
    this process.
    """
    raw = os.fspath(path) if path is not None else default_spool_path()
    flag = default_durable() if durable is None else durable
    # Keys are absolute and normalized: a path given so is its own key (a call per enqueue).
    found = _SPOOLS.get((raw, flag))
    if found is not None:
        return found
    root = os.path.abspath(raw)
    found = _SPOOLS.get((root, flag))
    if found is None:
        from jobq.spool import SpoolDir  # not at the top: the supervisor needs no spool code

        found = _SPOOLS[(root, flag)] = SpoolDir(root, durable=flag)
    return found
