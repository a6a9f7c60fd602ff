"""Text views for the command line: aligned tables, the status table, one job, ``--watch``.

Pure formatting over what ``jobq.inspect`` returns (plus the live-worker listing the status
table ends with); nothing here writes to the spool.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import orjson

from jobq import inspect
from jobq.inspect import STATES

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from jobq.spool import SpoolDir

__all__ = ("SHOWN_CHARS", "clip", "columns", "job_lines", "status_lines", "watch", "when")


def when(ts: float | None) -> str:
    """An epoch time as local ``YYYY-MM-DD HH:MM:SS``, or ``-``."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def columns(rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> list[str]:
    """Rows of cells as aligned lines (columns in ``right`` flush right), no trailing spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]


def status_lines(spool: SpoolDir, stats: dict[str, Any]) -> list[str]:
    """``jobq status``: the counts table, quarantined files, live and expired workers."""
    lines = [f"spool {stats['spool']}"]
    header = ("queue", *STATES)
    rows = [(q, *(str(c.get(s, 0)) for s in STATES)) for q, c in stats["queues"].items()]
    lines += columns([header, *rows], right=set(range(1, len(header))))
    if not rows:
        lines.append("(no queues yet)")
    if stats.get("invalid"):
        lines.append(
            f"invalid: {stats['invalid']} quarantined file(s), see `jobq jobs --state invalid`"
        )
    workers = stats["workers"]
    lines.append(f"workers: {len(workers)} live")
    lines += [
        f"  {w['id']}  host {w['host']}  pid {w['pid']}  last seen {when(w['last_seen'])}"
        for w in workers
    ]
    expired = [w for w in inspect.worker_list(spool, include_expired=True) if w["expired"]]
    lines += [
        f"  {w['id']}  lease EXPIRED (last seen {when(w['last_seen'])}): "
        "a running worker will reap it and requeue its jobs"
        for w in expired
    ]
    return lines


#: Characters of args, kwargs, a result or an error message shown by ``status JOB_ID``.
SHOWN_CHARS = 400


def clip(text: str) -> str:
    """``text``, cut to ``SHOWN_CHARS`` with a note saying so (``--json`` prints it whole)."""
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}… ({len(text):,} chars in all: --json prints them whole)"


def job_lines(info: dict[str, Any]) -> list[str]:
    """``jobq status JOB_ID``: one ``key: value`` line each, long values cut (``clip``)."""
    keys = ("id", "name", "queue", "state", "attempts")
    lines = [f"{key + ':':<13}{info.get(key)}" for key in keys]
    lines.append(f"{'args:':<13}{clip(orjson.dumps(info.get('args')).decode())}")
    if info.get("kwargs"):
        lines.append(f"{'kwargs:':<13}{clip(orjson.dumps(info.get('kwargs')).decode())}")
    for key in ("enqueued_at", "started_at", "finished_at"):
        lines.append(f"{key + ':':<13}{when(info.get(key))}")
    if info.get("worker"):
        lines.append(f"{'worker:':<13}{info['worker']}")
    if info.get("progress"):
        p = info["progress"]
        shown = str(p.get("done")) + ("" if p.get("total") is None else f"/{p.get('total')}")
        lines.append(f"{'progress:':<13}{shown} {clip(str(p.get('message') or ''))}".rstrip())
    if info.get("state") == "done":
        lines.append(f"{'result:':<13}{clip(orjson.dumps(info.get('result')).decode())}")
    if info.get("error"):
        err = info["error"]
        lines.append(f"{'error:':<13}{err.get('type')}: {clip(str(err.get('message')))}")
        lines.append(str(err.get("traceback", "")).rstrip())
    return lines


def watch(render: Callable[[], list[str]], interval: float) -> None:
    """Redraw ``render()`` in place every ``interval`` seconds until Ctrl-C (then exit 0).

    Each frame goes home, overwrites the lines (clearing what is left of each), and clears
    below: no scrolling and no flicker.
    """
    out = sys.stdout  # not click.echo: it strips the escapes when stdout is not a terminal
    try:
        out.write("\x1b[2J")
        while True:
            stamp = time.strftime("%H:%M:%S")
            lines = [f"every {interval:g} s, {stamp} (Ctrl-C to stop)", "", *render()]
            out.write("\x1b[H" + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
            out.flush()
            time.sleep(interval)
    except KeyboardInterrupt:
        out.write("\n")
        out.flush()
