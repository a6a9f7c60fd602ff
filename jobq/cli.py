"""The ``jobq`` command line: a thin click layer over the same functions the API uses.

Each command imports what it uses when it runs, so that a command pays only for its own
imports: ``jobq worker --processes N`` starts its children before anything of the worker
is imported (each child imports it anyway).
"""

from __future__ import annotations

import os
import sys
import time

import click

from jobq import cli_jobs, config
from jobq.cli_errors import OneLineErrors, fail, one_line_errors
from jobq.cli_options import duration, job_id_of, print_json, spool_for, spool_option
from jobq.layout import FINISHED_STATES, FORMAT_FILE, INVALID, STATES
from jobq.logs import FORMATS as LOG_FORMATS
from jobq.logs import configure as configure_logging
from jobq.names import check_queue

__all__ = ("main",)


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--log-level", type=click.Choice(_LOG_LEVELS, case_sensitive=False),
              default="INFO", show_default=True, help="Least level logged on stderr.")  # fmt: skip
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="text, or json: one JSON object a line, for log shippers.")  # fmt: skip
@click.option("--result-ttl", "result_ttl", metavar="DURATION", default=None,
              help="Keep done records this long (30s, 12h, 7d) unless a job says otherwise "
              "[default: until jobq purge].")  # fmt: skip
@click.option("--unknown-grace", type=click.FloatRange(min=0), default=300.0, show_default=True,
              help="Seconds a job this worker has no function for is left to workers that "
              "have it before it fails (rolling deploys).")  # fmt: skip
@spool_option
@one_line_errors
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
    log_level: str,
    log_format: str,
    result_ttl: str | None,
    unknown_grace: float,
    spool_path: str | None,
) -> None:
    """Import APP modules (registering their @job functions) and run jobs."""
    from jobq import supervisor

    handed = supervisor.child_log_stream()
    if handed is None:
        configure_logging(log_level, log_format)
    else:
        configure_logging(log_level, log_format, stream=handed[1], child=handed[0])
    ttl = None if result_ttl is None else duration(result_ttl, "--result-ttl")

    queue_list = None
    if queues is not None:
        queue_list = [check_queue(q.strip()) for q in queues.split(",") if q.strip()]
    if processes > 1:
        if durable is None:
            config.default_durable()  # a bad JOBQ_DURABLE stops here, not in every child
        sys.exit(supervisor.supervise(processes, sys.argv[1:]))
    spool = spool_for(spool_path, durable)
    sys.exit(
        supervisor.run_worker(
            spool,
            apps,
            queue_list,
            concurrency,
            backend,
            burst,
            lease,
            grace,
            result_ttl=ttl,
            unknown_grace=unknown_grace,
        )
    )


@main.command()
@click.argument("job_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--watch", is_flag=True, help="Redraw in place until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between redraws with --watch.")  # fmt: skip
@spool_option
@one_line_errors
def status(
    job_id: str | None, as_json: bool, watch: bool, interval: float, spool_path: str | None
) -> None:
    """Counts per queue and live workers, or one job's state, times, result or error."""
    from jobq import inspect, render

    if watch and as_json:
        raise click.UsageError("--watch redraws the table: leave out --json")
    spool = spool_for(spool_path)
    inspect.require_spool(spool)
    if job_id is not None:
        job_id = job_id_of(spool, job_id)
    if watch:
        one = job_id

        def frame() -> list[str]:
            if one is None:
                return render.status_lines(spool, inspect.spool_stats(spool))
            return render.job_lines(inspect.job_info(spool, one, details=True))

        render.watch(frame, interval)
        return
    if job_id is None:
        stats = inspect.spool_stats(spool)
        if as_json:
            print_json(stats)
            return
        click.echo("\n".join(render.status_lines(spool, stats)))
        return
    info = inspect.job_info(spool, job_id, details=not as_json)
    print_json(info) if as_json else click.echo("\n".join(render.job_lines(info)))
    if info["state"] in ("failed", INVALID):
        sys.exit(1)  # "job failed" is exit 1, so scripts can test the outcome directly


@main.command()
@click.option("--state", type=click.Choice([*STATES, INVALID]), default=None,
              help="Only jobs in this state; 'invalid' lists quarantined files.")  # fmt: skip
@click.option("--queue", default=None)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@spool_option
@one_line_errors
def jobs(
    state: str | None, queue: str | None, limit: int, as_json: bool, spool_path: str | None
) -> None:
    """List jobs: waiting ones in run order, finished ones by enqueue time, newest first."""
    from jobq import inspect, joblist, render

    if queue is not None:
        check_queue(queue)
    spool = spool_for(spool_path)
    inspect.require_spool(spool)
    rows = joblist.list_jobs(spool, state=state, queue=queue, limit=limit)
    if as_json:
        print_json(rows)
        return
    if not rows:
        return
    table: list[tuple[str, ...]]
    if state == INVALID:
        table = [("quarantined", "file", "reason")]
        table += [(render.when(r["quarantined_at"]), r["file"], r["reason"] or "-") for r in rows]
    else:
        table = [("id", "state", "queue", "attempts", "enqueued", "name")]
        table += [
            (r["id"], r["state"], r["queue"], str(r["attempts"] or 0),
             render.when(r["enqueued_at"]), r["name"])
            for r in rows
        ]  # fmt: skip
    click.echo("\n".join(render.columns(table, right={3} if state != INVALID else ())))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@spool_option
@one_line_errors
def schedules(as_json: bool, spool_path: str | None) -> None:
    """The periodic jobs that workers registered, their next tick and last tick's job."""
    from jobq import inspect
    from jobq.periodic import describe_tick

    spool = spool_for(spool_path)
    if not os.path.exists(spool.path(FORMAT_FILE)):
        fail(f"no spool at {spool.root}")
    found = inspect.schedule_list(spool)
    if as_json:
        print_json(found)
        return
    if not found:
        click.echo("no periodic jobs registered (a worker registers its app's cron=/every= jobs)")
        return
    rows = [("name", "queue", "schedule", "tz", "next tick", "last tick", "last job", "state")]
    rows += [
        (s["name"], s["queue"] or "-", s["schedule"] or "-", s["tz"] or "-",
         describe_tick(s["next_tick"]), describe_tick(s["last_tick"]),
         s["last_job_id"] or "-", s["last_state"] or "-")
        for s in found
    ]  # fmt: skip
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@main.command()
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job finishes.")
@spool_option
@one_line_errors
def logs(job_id: str, follow: bool, spool_path: str | None) -> None:
    """Print the log a job captured while it ran."""
    from jobq import admin, inspect

    spool = spool_for(spool_path)
    inspect.require_spool(spool)
    job_id = job_id_of(spool, job_id)
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
        if not follow or state in (*FINISHED_STATES, INVALID):
            return
        time.sleep(0.2)
        state = admin.job_state(spool, job_id)


@main.command()
@click.option("--jobs", "count", type=click.IntRange(min=1), default=2000, show_default=True)
@click.option("--durable/--no-durable", default=True, show_default=True)
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@spool_option
@one_line_errors
def bench(count: int, durable: bool, processes: int, as_json: bool, spool_path: str | None) -> None:
    """Measure this spool's filesystem: enqueue/s, jobs/s, pickup latency p50/p99."""
    from jobq import bench as benchmod

    results = benchmod.run(
        spool_for(spool_path).root, count, durable, processes, progress=not as_json
    )
    if as_json:
        print_json(results)
    else:
        benchmod.print_report(results)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback unless told otherwise).")  # fmt: skip
@click.option("--port", type=click.IntRange(1, 65535), default=8181, show_default=True)
@click.option("--allow-actions", is_flag=True,
              help="Offer retry and cancel buttons (POST, same-origin only).")  # fmt: skip
@spool_option
@one_line_errors
def dashboard(host: str, port: int, allow_actions: bool, spool_path: str | None) -> None:
    """Serve the web dashboard: queues, workers, jobs, logs, /metrics and /api/status."""
    from jobq import dashboard as web

    if web.missing_extra():
        fail("the dashboard needs the extra: pip install 'jobq[dashboard]'")
    spool = spool_for(spool_path)
    if not web.is_spool(spool):
        fail(f"no spool at {spool.root}")
    web.serve(spool, host, port, allow_actions)


for _command in (cli_jobs.enqueue, cli_jobs.retry, cli_jobs.cancel, cli_jobs.purge):
    main.add_command(_command)
