"""The commands that change jobs: ``enqueue``, ``retry``, ``cancel`` and ``purge``.

Thin, as every command: the work is ``jobq.byname`` and ``jobq.admin``'s; ``jobq.cli`` adds
these to the ``jobq`` group.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from jobq.cli_errors import one_line_errors, say
from jobq.cli_options import duration, job_id_of, json_arg, spool_for, spool_option
from jobq.errors import JobNotFound
from jobq.layout import CANCELLED, FINISHED_STATES, INVALID
from jobq.names import check_queue

if TYPE_CHECKING:
    from collections.abc import Callable

    from jobq.spool import SpoolDir

__all__ = ("cancel", "enqueue", "purge", "retry")


@click.command()
@click.argument("job_ids", nargs=-1)
@click.option("--failed", "all_failed", is_flag=True, help="Requeue every failed job.")
@click.option("--queue", default=None, help="With --failed: only this queue.")
@spool_option
@one_line_errors
def retry(
    job_ids: tuple[str, ...], all_failed: bool, queue: str | None, spool_path: str | None
) -> None:
    """Put failed or cancelled jobs back to pending."""
    from jobq import admin, inspect

    if bool(job_ids) == all_failed:
        raise click.UsageError("give JOB_ID... or --failed (not both)")
    only = check_queue(queue) if queue else None
    spool = spool_for(spool_path)
    inspect.require_spool(spool)
    if all_failed:
        done = admin.retry_failed(spool, only)
        click.echo(f"requeued {len(done)} failed job(s)")
        return

    def not_retried(job_id: str) -> str:
        if admin.job_state(spool, job_id) == INVALID:
            return (
                "invalid: its file was quarantined and cannot run again (see `jobq status "
                f"{job_id}`); enqueue it anew"
            )
        return "not dead (nothing to retry)"

    def requeued(job_id: str) -> str:
        # A job that runs after= others is cancelled again at once while one of them stays
        # failed or cancelled: say so rather than report a retry that did not take.
        if admin.job_state(spool, job_id) == CANCELLED:
            return (
                "requeued, but cancelled again at once: a job it runs after (after=) is failed "
                "or cancelled; retry that one first"
            )
        return "requeued"

    _for_each_job(spool, job_ids, lambda i: admin.retry_job(spool, i), requeued, not_retried)


def _for_each_job(
    spool: SpoolDir,
    job_ids: tuple[str, ...],
    action: Callable[[str], bool],
    done: str | Callable[[str], str],
    skipped: str | Callable[[str], str],
) -> None:
    """Apply ``action`` to each id, one line each; exit 1 after all if any id was unknown.

    ``done`` says what became of a job ``action`` returned True for, ``skipped`` why it
    returned False (each a function of the id where that varies).
    """
    missing = 0
    for job_id in job_ids:
        try:
            checked = job_id_of(spool, job_id)
            said = done if action(checked) else skipped
            line = said if isinstance(said, str) else said(checked)
        except JobNotFound as exc:
            say(str(exc))
            missing += 1
            continue
        click.echo(f"{job_id} {line}")
    if missing:
        sys.exit(1)


@click.command()
@click.argument("job_ids", nargs=-1, required=True)
@spool_option
@one_line_errors
def cancel(job_ids: tuple[str, ...], spool_path: str | None) -> None:
    """Cancel pending, scheduled or running jobs."""
    from jobq import admin, inspect

    spool = spool_for(spool_path)
    inspect.require_spool(spool)
    _for_each_job(
        spool, job_ids, lambda i: admin.cancel_job(spool, i), "cancelled", "already finished"
    )


@click.command()
@click.argument("name")
@click.option("--args", "args_json", default="[]", help="JSON array of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option("--queue", default=None, help="The queue [default: the job's, else default].")
@click.option("--delay", type=click.FloatRange(min=0), default=0.0, help="Seconds to wait.")
@click.option("--priority", type=click.IntRange(-9999, 9999), default=None,
              help="[default: the job's, else 0]")  # fmt: skip
@click.option("--retries", type=click.IntRange(min=0), default=None,
              help="[default: the job's, else 0]")  # fmt: skip
@spool_option
@one_line_errors
def enqueue(
    name: str,
    args_json: str,
    kwargs_json: str,
    queue: str | None,
    delay: float,
    priority: int | None,
    retries: int | None,
    spool_path: str | None,
) -> None:
    """Enqueue a job by its registered NAME, with its @job options where its module imports;
    prints its id."""
    from jobq.byname import enqueue_by_name
    from jobq.decorator import Spool

    args = json_arg(args_json, list, "--args")
    kwargs = json_arg(kwargs_json, dict, "--kwargs")
    spool = Spool(spool_for(spool_path).root)
    handle, note = enqueue_by_name(
        spool, name, args, kwargs, queue=queue, delay=delay, priority=priority, retries=retries
    )
    if note is not None:
        say(f"note: {note}; enqueued without its @job options")
    click.echo(handle.id)


@click.command()
@click.option("--state", "states", type=click.Choice([*FINISHED_STATES]), multiple=True,
              help="Which records [default: done, failed and cancelled].")  # fmt: skip
@click.option("--older-than", default="7d", show_default=True, help="Age like 30m, 12h, 7d.")
@click.option("--queue", default=None)
@spool_option
@one_line_errors
def purge(
    states: tuple[str, ...], older_than: str, queue: str | None, spool_path: str | None
) -> None:
    """Remove old outcome records and their logs."""
    from jobq import admin, inspect

    age = duration(older_than, "--older-than")
    chosen = states or FINISHED_STATES
    only = check_queue(queue) if queue else None
    spool = spool_for(spool_path)
    inspect.require_spool(spool)
    removed = admin.purge(spool, tuple(chosen), age, only)
    click.echo(f"removed {removed} record(s)")
