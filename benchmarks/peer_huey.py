"""The benchmark's no-op task for Huey (imported by ``huey_consumer peer_huey.huey``).

``PEER_HUEY`` picks the storage: ``sqlite`` (SqliteHuey as shipped: WAL journal, SQLite's
default ``synchronous=FULL``, so every commit is fsynced), ``sqlite-nofsync``
(``SqliteHuey(fsync=False)``: ``synchronous=OFF``) or ``file`` (FileHuey, which never fsyncs).
``PEER_HUEY_PATH`` is the database file or directory.
"""

from __future__ import annotations

import os

from huey import FileHuey, Huey, SqliteHuey


def _make() -> Huey:
    kind = os.environ.get("PEER_HUEY", "sqlite")
    path = os.environ["PEER_HUEY_PATH"]
    if kind == "sqlite":
        return SqliteHuey("peer", filename=path)
    if kind == "sqlite-nofsync":
        return SqliteHuey("peer", filename=path, fsync=False)
    if kind == "file":
        return FileHuey("peer", path=path)
    raise SystemExit(f"unknown PEER_HUEY={kind!r}")


huey = _make()


@huey.task()
def noop() -> int:
    """Does nothing; returns 1 so that a result is stored (Huey skips storing None)."""
    return 1
