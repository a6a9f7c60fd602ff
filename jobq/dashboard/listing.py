"""Jobs by state and queue, one page at a time, from sorted directory listings.

A page costs one listing of the state's directories (names only: no stat, no read), a sort of
the names (or a partial one, ``heapq``, while the page is near the front) and a read of the
files on the page. A spool with a million records is never read whole.

Order: pending and waiting jobs in run order (priority, then enqueue time), scheduled ones by
due time, finished ones newest first by id (jobq's ids start with their enqueue time; keyed and
hand-made ids, which say nothing about time, sort by name: ``jobq jobs`` reads their records to
place them, which a page over a million records cannot afford).

Search matches a job whose id or name contains the text. Ids are in the file names, so they
cost nothing; names are inside the files, so a search reads at most ``SCAN_BUDGET`` files per
request and says how far it got, with a link to search further.

States this module does not know (``invalid``, and any added later) are listed through
``jobq.joblist.list_jobs``, which reads every file up to the page's end.
"""

from __future__ import annotations

import heapq
import itertools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobq import joblist
from jobq import layout as L
from jobq.errors import InvalidName, JobqError
from jobq.layout import JobFileName, parse_running, parse_scheduled
from jobq.model import CorruptJob, decode_record
from jobq.spool import list_names

if TYPE_CHECKING:
    from collections.abc import Iterator

    from jobq.spool import SpoolDir

__all__ = ("PER_PAGE", "SCAN_BUDGET", "WAITING", "JobPage", "oldest_pending", "page_jobs")

PER_PAGE = 50
#: How many files a name search reads per request at most.
SCAN_BUDGET = 2000
#: Jobs held by ``after=`` dependencies: ``queues/Q/waiting/``, named like pending jobs.
WAITING = "waiting"
_LISTED = (L.PENDING, L.SCHEDULED, WAITING, L.RUNNING, *L.FINISHED_STATES)
# While the page ends before len/_PARTIAL, a partial sort (heapq) beats sorting everything.
_PARTIAL = 8

Entry = tuple[str, str, str]  # (file name, queue, directory)


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of a job listing.

    Attributes:
        rows: the jobs on the page (dicts with ``id``, ``name``, ``queue``, ``state``, ...).
        total: how many jobs the state holds (in the chosen queue), or None if unknown.
        offset: the position in the listing where the page starts.
        next_offset: where the next page starts, or None on the last page.
        scanned_to: with a search, the position where the scan stopped; else None.
    """

    rows: list[dict[str, Any]]
    total: int | None
    offset: int
    next_offset: int | None
    scanned_to: int | None = None


def page_jobs(
    spool: SpoolDir,
    state: str,
    queue: str | None = None,
    *,
    offset: int = 0,
    limit: int = PER_PAGE,
    search: str = "",
    budget: int = SCAN_BUDGET,
) -> JobPage:
    """The jobs of ``state`` (in ``queue``, or all queues) from position ``offset`` on.

    Args:
        search: keep only jobs whose id or name contains this text (case-insensitive).
        budget: with ``search``, read at most this many files that do not match by id.
    """
    if state not in _LISTED:
        return _fallback_page(spool, state, queue, offset, limit)
    queues = [queue] if queue is not None else spool.queues()
    end = offset + limit
    # A search looks at no more than its budget of files plus a page of id matches.
    total, ordered = _ordered(spool, state, queues, end + budget + 1 if search else end)
    if search:
        return _search(spool, state, ordered, total, search.lower(), offset, limit, budget)
    chosen = itertools.islice(ordered, offset, end)
    rows = [row for entry in chosen if (row := _row(spool, state, entry)) is not None]
    return JobPage(rows, total, offset, end if end < total else None)


def oldest_pending(spool: SpoolDir, queue: str) -> float | None:
    """Enqueue time (epoch seconds) of the oldest pending job of ``queue``, from names only."""
    stamps = [n[6:22] for n in spool.pending_names(queue) if n[5:6] == "-" and n[22:23] == "-"]
    oldest = min(stamps, default=None)
    if oldest is None or not oldest.isdigit():
        return None
    return int(oldest) / 1_000_000


def _ordered(
    spool: SpoolDir, state: str, queues: list[str], end: int | None
) -> tuple[int, Iterator[Entry]]:
    """How many entries there are, and the entries in display order: at least the first
    ``end`` of them, or all of them when ``end`` is None.

    Each queue's names are sorted on their own (only their first ``end`` while that is a small
    part), then merged lazily; a tuple is made only for the names that are looked at.
    """
    if state == L.RUNNING:  # a few files per worker: sort them all
        entries: list[Entry] = []
        for worker_id in spool.running_workers():
            directory = spool.running_dir(worker_id)
            entries += [(n, n.partition("@")[0], directory) for n in list_names(directory)]
        mine = sorted((e for e in entries if e[1] in queues), key=lambda e: e[0].partition("@")[2])
        return len(mine), iter(mine)
    newest_first = state in L.FINISHED_STATES
    total = 0
    streams: list[Iterator[Entry]] = []
    for queue in queues:
        directory = _directory(spool, state, queue)
        names = list_names(directory)
        total += len(names)
        if end is not None and end * _PARTIAL < len(names):
            names = (heapq.nlargest if newest_first else heapq.nsmallest)(end, names)
        else:
            names.sort(reverse=newest_first)
        streams.append(zip(names, itertools.repeat(queue), itertools.repeat(directory)))
    if len(streams) == 1:
        return total, streams[0]
    return total, heapq.merge(*streams, reverse=newest_first)


def _directory(spool: SpoolDir, state: str, queue: str) -> str:
    if state == L.PENDING:
        return spool.pending_dir(queue)
    if state == L.SCHEDULED:
        return spool.scheduled_dir(queue)
    if state == WAITING:
        return spool.path(L.QUEUES, queue, WAITING)
    return spool.path(state, queue)


def _job_id(state: str, filename: str) -> str:
    """The job id in a file name, without parsing it fully ("" if malformed)."""
    stem = filename.removesuffix(L.JOB_SUFFIX)
    if state in L.FINISHED_STATES:
        return stem
    if state == L.RUNNING:
        stem = stem.partition("@")[2]
    parts = stem.split("-")
    if state == L.SCHEDULED:
        parts = parts[1:]
    return parts[2] if len(parts) == 4 else ""


def _search(
    spool: SpoolDir,
    state: str,
    ordered: Iterator[Entry],
    total: int,
    text: str,
    offset: int,
    limit: int,
    budget: int,
) -> JobPage:
    rows: list[dict[str, Any]] = []
    reads = 0
    position = offset
    for entry in itertools.islice(ordered, offset, None):
        by_id = text in _job_id(state, entry[0]).lower()
        if not by_id:
            if reads >= budget:
                break
            reads += 1
        row = _row(spool, state, entry)
        position += 1
        if row is not None and (by_id or text in str(row["name"]).lower()):
            rows.append(row)
            if len(rows) == limit:
                break
    more = position < total
    return JobPage(rows, total, offset, position if more else None, position)


def _row(spool: SpoolDir, state: str, entry: Entry) -> dict[str, Any] | None:
    """The listing row for one file, or None if it moved away or cannot be read."""
    filename, queue, directory = entry
    try:
        with open(os.path.join(directory, filename), "rb") as f:
            job, outcome = decode_record(f.read())
    except (FileNotFoundError, CorruptJob):
        return None
    row: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "queue": queue,
        "state": state,
        "priority": job.priority,
        "attempts": outcome.get("attempts"),
        "enqueued_at": job.enqueued_at,
        "finished_at": outcome.get("finished_at"),
        "error": outcome.get("error"),
        "due_at": None,
        "worker": None,
    }
    try:
        if state in (L.PENDING, WAITING):
            row["attempts"] = JobFileName.parse(filename).attempts
        elif state == L.SCHEDULED:
            due_us, name = parse_scheduled(filename)
            row["attempts"], row["due_at"] = name.attempts, due_us / 1_000_000
        elif state == L.RUNNING:
            row["attempts"] = parse_running(filename)[1].attempts
            row["worker"] = os.path.basename(directory)
    except InvalidName:
        pass  # a misnamed file: a worker will quarantine it
    return row


def _fallback_page(
    spool: SpoolDir, state: str, queue: str | None, offset: int, limit: int
) -> JobPage:
    try:
        rows = joblist.list_jobs(spool, state=state, queue=queue, limit=offset + limit + 1)
    except (JobqError, ValueError, KeyError, OSError):
        rows = []
    more = len(rows) > offset + limit
    page = [{"error": None, "due_at": None, "worker": None, **r} for r in rows[offset:]]
    return JobPage(page[:limit], None, offset, offset + limit if more else None)
