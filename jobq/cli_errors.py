"""How the ``jobq`` command line fails: one line on stderr, never a traceback, and an exit code.

Exit codes (DESIGN.md): 1 for a job or spool that is not there, a job that failed and a
filesystem that refused; 2 for bad usage (an unknown command or option, a bad value, a
worker's app that does not import); 130 for Ctrl-C. Every line starts with ``jobq: ``.
click's own usage errors would print the command's usage and a hint first: ``OneLineErrors``
folds them into the same one line, naming the ``--help`` that shows the usage.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any, NoReturn, TypeVar

import click

from jobq.errors import ConfigurationError, JobNotFound, JobqError, SpoolError

__all__ = ("OneLineErrors", "exit_for", "fail", "one_line_errors", "say")

F = TypeVar("F", bound=Callable[..., Any])


def say(message: str) -> None:
    """Print ``message`` on stderr as one ``jobq: `` line, whatever lines it holds (an app's
    error may span several)."""
    click.echo("jobq: " + " ".join(message.split()), err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """``say`` ``message`` and exit with ``code``."""
    say(message)
    sys.exit(code)


def one_line_errors(func: F) -> F:
    """Turn every error of a command into one line on stderr, never a traceback: exit 1 (not
    found, job failed, the filesystem refused) or 2 (bad input); Ctrl-C exits 130 quietly."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own usage errors (exit 2, see OneLineErrors) and exits
        except BaseExceptionGroup as group:  # from a task group: the first error says it
            exit_for(_first_error(group))
        except (Exception, KeyboardInterrupt) as exc:
            exit_for(exc)

    return wrapper  # type: ignore[return-value]


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


def exit_for(exc: BaseException) -> NoReturn:
    """Exit with the one line and the exit code that ``exc`` calls for."""
    if isinstance(exc, KeyboardInterrupt):
        sys.exit(130)
    if isinstance(exc, JobNotFound):
        fail(str(exc).strip("'\""), 1)
    if isinstance(exc, (ValueError, TypeError, ConfigurationError)) and not isinstance(
        exc, OSError
    ):
        # InvalidName, SerializationError, an app that does not import: bad usage.
        fail(str(exc), 2)
    if isinstance(exc, OSError):  # SpoolError too: permission denied, read-only, disk full
        fail(_os_error(exc), 1)
    if isinstance(exc, JobqError):
        fail(str(exc), 1)
    logging.getLogger("jobq.cli").debug("unexpected error", exc_info=exc)
    fail(f"unexpected {type(exc).__name__}: {exc}", 1)


def _os_error(exc: OSError) -> str:
    if isinstance(exc, SpoolError) or not exc.strerror:
        return exc.strerror or str(exc)
    where = exc.filename if exc.filename is not None else None
    return f"{where}: {exc.strerror}" if where else exc.strerror


#: click 8.2+ raises this for a bare ``jobq`` (8.1 prints the help and exits by itself).
_NO_ARGS_IS_HELP: Any = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _UsageLine(click.UsageError):
    """A usage error shown as one ``jobq: `` line (exit 2, as click's)."""

    def show(self, file: IO[Any] | None = None) -> None:
        say(self.format_message())


@contextlib.contextmanager
def _usage_on_one_line() -> Iterator[None]:
    try:
        yield
    except _NO_ARGS_IS_HELP:
        raise  # a bare ``jobq``: the help is what was asked for
    except click.UsageError as exc:
        if isinstance(exc, _UsageLine):
            raise
        path = exc.ctx.command_path if exc.ctx is not None else "jobq"
        raise _UsageLine(f"{exc.format_message().rstrip('.')} (see '{path} --help')") from None


class OneLineErrors(click.Group):
    """A click group whose usage errors, its own and its commands', print one line (exit 2).

    Parsing a command's arguments and running its callback both happen inside the group's
    ``invoke``; the group's own options are parsed in its ``make_context``.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with _usage_on_one_line():
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with _usage_on_one_line():
            return super().invoke(ctx)
