"""The ``jobq`` command line: a thin click layer over the same functions the API uses."""

from __future__ import annotations

import functools
import logging
import re
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from jobq import admin, config, inspect
from jobq.api import spool_dir
from jobq.errors import ConfigurationError, JobNotFound, JobqError
from jobq.inspect import STATES
from jobq.layout import FINISHED_STATES
from jobq.model import Job, new_job_id
from jobq.names import check_job_id, check_job_name, check_queue

if TYPE_CHECKING:
    from jobq.spool import SpoolDir

__all__ = ("main",)

F = TypeVar("F", bound=Callable[..., Any])


def _spool_option(func: F) -> F:
    """Give a command ``--spool PATH`` (default: ``$JOBQ_SPOOL`` or ``./jobq-spool``)."""
    return click.option(
        "--spool",
        "spool_path",
        metavar="PATH",
        default=None,
        help="Spool directory [default: $JOBQ_SPOOL or ./jobq-spool].",
    )(func)


def _spool(spool_path: str | None, durable: bool | None = None) -> SpoolDir:
    ctx = click.get_current_context()
    path = spool_path or (ctx.obj or {}).get("spool") or config.default_spool_path()
    return spool_dir(path, durable)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"jobq: {message}", err=True)
    sys.exit(code)


def _errors(func: F) -> F:
    """Turn jobq errors into one line on stderr: exit 1 (not found, failed) or 2 (bad input)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except JobNotFound as exc:
            _fail(str(exc).strip("'\""), 1)
        except (ValueError, TypeError, ConfigurationError) as exc:
            # InvalidName, SerializationError, an app that does not import: bad usage.
            _fail(str(exc), 2)
        except JobqError as exc:
            _fail(str(exc), 1)

    return wrapper  # type: ignore[return-value]


def _print_json(value: object) -> None:
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration like 30s, 15m, 12h, 7d")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit


def _ago(ts: float | None) -> str:
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--spool", "spool_path", metavar="PATH", default=None, help="Spool directory.")
@click.version_option(package_name="jobq")
@click.pass_context
def main(ctx: click.Context, spool_path: str | None) -> None:
    """jobq: a background job queue whose queue is a directory."""
    ctx.obj = {"spool": spool_path}


@main.command()
@click.argument("apps", nargs=-1, required=True)
@click.option("--queues", default=None, help="Comma-separated queues [default: the app's].")
@click.option("--concurrency", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--backend", type=click.Choice(["asyncio", "trio"]), default="asyncio",
              show_default=True)  # fmt: skip
@click.option("--burst", is_flag=True, help="Exit once nothing is runnable.")
@click.option("--lease", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              help="Seconds a silent worker keeps its jobs.")  # fmt: skip
@click.option("--grace", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds SIGTERM waits for running jobs.")  # fmt: skip
@click.option("--durable/--no-durable", default=None, help="fsync outcomes [default: on].")
@_spool_option
@_errors
def worker(
    apps: tuple[str, ...],
    queues: str | None,
    concurrency: int,
    processes: int,
    backend: str,
    burst: bool,
    lease: float,
    grace: float,
    durable: bool | None,
    spool_path: str | None,
) -> None:
    """Import APP modules (registering their @job functions) and run jobs."""
    from jobq import supervisor

    queue_list = None
    if queues is not None:
        queue_list = [check_queue(q.strip()) for q in queues.split(",") if q.strip()]
    spool = _spool(spool_path, durable)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if processes > 1:
        sys.exit(supervisor.supervise(processes, sys.argv[1:]))
    sys.exit(
        supervisor.run_worker(spool, apps, queue_list, concurrency, backend, burst, lease, grace)
    )


def _status_table(stats: dict[str, Any]) -> None:
    click.echo(f"spool {stats['spool']}")
    header = ("queue", *STATES)
    rows = [(q, *(str(c[s]) for s in STATES)) for q, c in stats["queues"].items()]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [str(row[0]).ljust(widths[0])] + [
            str(v).rjust(w) for v, w in zip(row[1:], widths[1:], strict=True)
        ]
        click.echo("  ".join(cells))
    if not rows:
        click.echo("(no queues yet)")
    workers = stats["workers"]
    click.echo(f"workers: {len(workers)} live")
    for w in workers:
        click.echo(
            f"  {w['id']}  host {w['host']}  pid {w['pid']}  last seen {_ago(w['last_seen'])}"
        )


def _job_table(info: dict[str, Any]) -> None:
    for key in ("id", "name", "queue", "state", "attempts"):
        click.echo(f"{key + ':':<13}{info.get(key)}")
    click.echo(f"{'args:':<13}{orjson.dumps(info.get('args')).decode()}")
    if info.get("kwargs"):
        click.echo(f"{'kwargs:':<13}{orjson.dumps(info.get('kwargs')).decode()}")
    for key in ("enqueued_at", "started_at", "finished_at"):
        click.echo(f"{key + ':':<13}{_ago(info.get(key))}")
    if info.get("worker"):
        click.echo(f"{'worker:':<13}{info['worker']}")
    if info.get("progress"):
        p = info["progress"]
        click.echo(f"{'progress:':<13}{p.get('done')}/{p.get('total')} {p.get('message', '')}")
    if info.get("state") == "done":
        click.echo(f"{'result:':<13}{orjson.dumps(info.get('result')).decode()}")
    if info.get("error"):
        err = info["error"]
        click.echo(f"{'error:':<13}{err.get('type')}: {err.get('message')}")
        click.echo(str(err.get("traceback", "")).rstrip())


@main.command()
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_spool_option
@_errors
def status(job_id: str | None, as_json: bool, spool_path: str | None) -> None:
    """Counts per queue and live workers, or one job's state, times, result or error."""
    spool = _spool(spool_path)
    if job_id is None:
        stats = inspect.spool_stats(spool)
        if as_json:
            _print_json(stats)
            return
        _status_table(stats)
        expired = [w for w in inspect.worker_list(spool, include_expired=True) if w["expired"]]
        for w in expired:
            click.echo(
                f"  {w['id']}  lease EXPIRED (last seen {_ago(w['last_seen'])}): "
                "a running worker will reap it and requeue its jobs"
            )
        return
    check_job_id(job_id)
    info = inspect.job_info(spool, job_id, details=not as_json)
    _print_json(info) if as_json else _job_table(info)
    if info["state"] == "failed":
        sys.exit(1)  # "job failed" is exit 1, so scripts can test the outcome directly


@main.command()
@click.option("--state", type=click.Choice(list(STATES)), default=None)
@click.option("--queue", default=None)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_spool_option
@_errors
def jobs(
    state: str | None, queue: str | None, limit: int, as_json: bool, spool_path: str | None
) -> None:
    """List jobs: waiting ones in run order, finished ones newest first."""
    if queue is not None:
        check_queue(queue)
    rows = inspect.list_jobs(_spool(spool_path), state=state, queue=queue, limit=limit)
    if as_json:
        _print_json(rows)
        return
    for r in rows:
        click.echo(
            f"{r['id']}  {r['state']:<9}  {r['queue']:<12}  {r['attempts'] or 0:>2}  {r['name']}"
        )


@main.command()
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job finishes.")
@_spool_option
@_errors
def logs(job_id: str, follow: bool, spool_path: str | None) -> None:
    """Print the log a job captured while it ran."""
    spool = _spool(spool_path)
    check_job_id(job_id)
    state = admin.job_state(spool, job_id)
    offset = 0
    while True:
        try:
            with open(spool.log_path(job_id), "rb") as f:
                f.seek(offset)
                chunk = f.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            click.echo(chunk.decode("utf-8", errors="replace"), nl=False)
        if not follow or state in FINISHED_STATES:
            return
        time.sleep(0.2)
        state = admin.job_state(spool, job_id)


@main.command()
@click.argument("job_ids", nargs=-1)
@click.option("--failed", "all_failed", is_flag=True, help="Requeue every failed job.")
@click.option("--queue", default=None, help="With --failed: only this queue.")
@_spool_option
@_errors
def retry(
    job_ids: tuple[str, ...], all_failed: bool, queue: str | None, spool_path: str | None
) -> None:
    """Put failed or cancelled jobs back to pending."""
    if bool(job_ids) == all_failed:
        raise click.UsageError("give JOB_ID... or --failed (not both)")
    spool = _spool(spool_path)
    if all_failed:
        done = admin.retry_failed(spool, check_queue(queue) if queue else None)
        click.echo(f"requeued {len(done)} failed job(s)")
        return
    _for_each_job(
        job_ids, lambda i: admin.retry_job(spool, i), "requeued", "not dead (nothing to retry)"
    )


def _for_each_job(
    job_ids: tuple[str, ...], action: Callable[[str], bool], done: str, skipped: str
) -> None:
    """Apply ``action`` to each id, one line each; exit 1 after all if any id was unknown."""
    missing = 0
    for job_id in job_ids:
        check_job_id(job_id)
        try:
            ok = action(job_id)
        except JobNotFound as exc:
            click.echo(f"jobq: {exc}", err=True)
            missing += 1
            continue
        click.echo(f"{job_id} {done if ok else skipped}")
    if missing:
        sys.exit(1)


@main.command()
@click.argument("job_ids", nargs=-1, required=True)
@_spool_option
@_errors
def cancel(job_ids: tuple[str, ...], spool_path: str | None) -> None:
    """Cancel pending, scheduled or running jobs."""
    spool = _spool(spool_path)
    _for_each_job(job_ids, lambda i: admin.cancel_job(spool, i), "cancelled", "already finished")


def _json_arg(text: str, kind: type, what: str) -> Any:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=what) from None
    if not isinstance(value, kind):
        raise click.BadParameter(f"must be a JSON {kind.__name__}", param_hint=what)
    return value


@main.command()
@click.argument("name")
@click.option("--args", "args_json", default="[]", help="JSON array of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option("--queue", default="default", show_default=True)
@click.option("--delay", type=click.FloatRange(min=0), default=0.0, help="Seconds to wait.")
@click.option("--priority", type=click.IntRange(-9999, 9999), default=0, show_default=True)
@click.option("--retries", type=click.IntRange(min=0), default=0, show_default=True)
@_spool_option
@_errors
def enqueue(
    name: str,
    args_json: str,
    kwargs_json: str,
    queue: str,
    delay: float,
    priority: int,
    retries: int,
    spool_path: str | None,
) -> None:
    """Enqueue a job by its registered NAME (no app import needed); prints its id."""
    args = _json_arg(args_json, list, "--args")
    kwargs = _json_arg(kwargs_json, dict, "--kwargs")
    now = time.time()
    job = Job(
        id=new_job_id(),
        name=check_job_name(name),
        queue=check_queue(queue),
        args=args,
        kwargs=kwargs,
        priority=priority,
        retries=retries,
        enqueued_at=now,
    )
    due = round((now + delay) * 1_000_000) if delay > 0 else None
    _spool(spool_path).publish([job], due)
    click.echo(job.id)


@main.command()
@click.option("--state", "states", type=click.Choice([*FINISHED_STATES]), multiple=True,
              help="Which records [default: done, failed and cancelled].")  # fmt: skip
@click.option("--older-than", default="7d", show_default=True, help="Age like 30m, 12h, 7d.")
@click.option("--queue", default=None)
@_spool_option
@_errors
def purge(
    states: tuple[str, ...], older_than: str, queue: str | None, spool_path: str | None
) -> None:
    """Remove old outcome records and their logs."""
    age = _duration(older_than)
    chosen = states or FINISHED_STATES
    removed = admin.purge(
        _spool(spool_path), tuple(chosen), age, check_queue(queue) if queue else None
    )
    click.echo(f"removed {removed} record(s)")


@main.command()
@click.option("--jobs", "count", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--durable/--no-durable", default=True, show_default=True)
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_spool_option
@_errors
def bench(count: int, durable: bool, processes: int, as_json: bool, spool_path: str | None) -> None:
    """Measure this spool's filesystem: enqueue/s, jobs/s, pickup latency p50/p99."""
    from jobq import bench as benchmod

    results = benchmod.run(_spool(spool_path).root, count, durable, processes, progress=not as_json)
    if as_json:
        _print_json(results)
    else:
        benchmod.print_report(results)
