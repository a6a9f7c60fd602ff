"""The spool's format marker, ``jobq-spool.json``: ``{"format": 1}``.

Every process checks it before using a spool, so that no jobq misreads a spool of another
format. It is written once per spool and always synced, even with durability off: a marker
that a power cut emptied would make every later command refuse the spool.

Failure story: the marker is published like a job (``tmp/``, fsync, rename, fsync of the spool
directory). A crash before the rename leaves no marker, and the next process writes it. An
empty marker is what a power cut leaves of one written without a sync (by an older jobq, or a
foreign producer that skips ``sync``): it is taken as the current format, and the next process
that writes to the spool writes it again. Anything else that is not ``{"format": N}`` is
refused, never guessed at.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import orjson

from jobq import layout as L
from jobq.errors import ConfigurationError
from jobq.spool.files import translated

if TYPE_CHECKING:
    from jobq.spool.files import FileOps

__all__ = ("check_marker", "write_marker")


def write_marker(files: FileOps) -> None:
    """Write the format marker of the spool at ``files.root``, synced whatever its durability."""
    data = orjson.dumps({"format": L.FORMAT_VERSION})
    files._publish_file(files.path(L.FORMAT_FILE), data, always_sync=True)


def check_marker(files: FileOps) -> bool:
    """Check the format marker of the spool at ``files.root``, without writing anything.

    Returns:
        False if the marker is empty (a power cut's leftover, taken as this format).

    Raises:
        ConfigurationError: if the marker names another format or is not a marker.
        SpoolError: if it cannot be read.
    """
    marker = files.path(L.FORMAT_FILE)
    with translated(f"read the format marker of {files.root}"):
        raw = files.read_file(marker)
    if not raw:
        return False
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        _refuse(marker, f"not valid JSON: {exc}")
    version = data.get("format") if isinstance(data, dict) else None
    if isinstance(version, bool) or not isinstance(version, int):
        _refuse(marker, 'not an object with an integer "format"')
    if version != L.FORMAT_VERSION:
        raise ConfigurationError(
            f"{files.root} holds a spool of format {version!r}; this jobq reads "
            f"format {L.FORMAT_VERSION} (use another --spool or upgrade jobq)"
        )
    return True


def _refuse(marker: str, why: str) -> NoReturn:
    raise ConfigurationError(
        f"{marker} is not a jobq format marker ({why}); this jobq reads format "
        f"{L.FORMAT_VERSION}: use another --spool, or if this is a jobq spool whose marker "
        f'was damaged, write {{"format": {L.FORMAT_VERSION}}} into it'
    )
