"""The public face of ``jobq``: exactly the names the product contract promises, documented.

DESIGN.md names the API (``job``, ``JobFunction``, ``JobHandle``, ``Spool``, ``configure``,
``current_job``, ``Worker``) and the error tree under ``JobqError``. Adding or removing a public
name is a deliberate act: update this test and the docs with it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
import subprocess
import sys

import pytest

import jobq

PROMISED_API = {"job", "JobFunction", "JobHandle", "Spool", "configure", "current_job", "Worker"}
PROMISED_ERRORS = {
    "JobqError", "ConfigurationError", "InvalidName", "JobNotFound", "SerializationError",
    "SpoolError", "JobFailed", "JobCancelled", "DependencyFailed", "Retry",
}  # fmt: skip
# DESIGN.md's "Hooks and observability".
PROMISED_HOOKS = {"JobEvent", "on_start", "on_success", "on_failure", "on_retry"}
# Named by the docs rather than DESIGN.md: what current_job() returns, what options() holds,
# and the helper that passes keyword arguments to enqueue_many.
DOCUMENTED_EXTRAS = {"JobContext", "JobOptions", "call"}

PROMISED_MEMBERS = {
    "JobFunction": {"enqueue", "enqueue_sync", "enqueue_many", "options", "name"},
    "JobHandle": {"result", "state", "cancel", "log", "info_sync", "state_sync", "cancel_sync"},
    "Spool": {"job", "get", "stats", "path"},
    "Worker": {"run", "stop"},
    "JobContext": {"progress", "logger"},
}


def test_all_is_exactly_the_promised_names() -> None:
    assert isinstance(jobq.__all__, tuple)
    assert len(set(jobq.__all__)) == len(jobq.__all__)
    assert set(jobq.__all__) == PROMISED_API | PROMISED_ERRORS | DOCUMENTED_EXTRAS | PROMISED_HOOKS


@pytest.mark.parametrize("name", jobq.__all__)
def test_every_public_name_is_documented(name: str) -> None:
    obj = getattr(jobq, name)
    own_doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
    assert own_doc, f"jobq.{name} has no docstring of its own"
    assert len(own_doc.strip()) > 20


@pytest.mark.parametrize("name", sorted(PROMISED_MEMBERS))
def test_promised_members_exist_and_are_documented(name: str) -> None:
    cls = getattr(jobq, name)
    assert PROMISED_MEMBERS[name] <= set(dir(cls))
    for member, value in vars(cls).items():
        if member.startswith("_") or not (callable(value) or isinstance(value, property)):
            continue
        assert inspect.getdoc(value), f"jobq.{name}.{member} has no docstring"


def test_errors_form_one_tree() -> None:
    for name in PROMISED_ERRORS:
        assert issubclass(getattr(jobq, name), jobq.JobqError), name
    assert issubclass(jobq.JobNotFound, LookupError)
    assert issubclass(jobq.SpoolError, OSError)


def test_job_context_exposes_what_a_job_needs() -> None:
    fields = set(inspect.signature(jobq.JobContext).parameters)
    assert {"id", "attempt", "log"} <= fields
    with pytest.raises(jobq.JobqError, match="inside a job"):
        jobq.current_job()


def test_every_module_all_lists_existing_names() -> None:
    for info in pkgutil.iter_modules(jobq.__path__):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"jobq.{info.name}")
        for name in getattr(module, "__all__", ()):
            assert hasattr(module, name), f"jobq.{info.name}.__all__ names missing {name!r}"


def test_version_matches_the_package() -> None:
    assert jobq.__version__ == importlib.metadata.version("jobq")


def test_import_jobq_is_light_and_every_name_still_resolves() -> None:
    # A command like `jobq worker --processes N` starts its children before it imports the
    # worker; `import jobq` alone must not pull the package in (PEP 562 names).
    code = (
        "import sys, jobq\n"
        "heavy = sorted(m for m in sys.modules if m.startswith('jobq.'))\n"
        "print(','.join(heavy))\n"
        "from jobq import *\n"
        "assert all(getattr(jobq, n) is globals()[n] for n in jobq.__all__)\n"
        "assert set(jobq.__all__) <= set(dir(jobq))\n"
        "try:\n"
        "    jobq.no_such_name\n"
        "except AttributeError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, error = done.stdout.splitlines()
    assert loaded == ""
    assert error == "module 'jobq' has no attribute 'no_such_name'"


def test_the_supervisor_starts_without_the_worker_code() -> None:
    # What `jobq worker --processes N` imports before it starts its children.
    code = (
        "import sys\n"
        "from jobq import cli, supervisor\n"
        "print(','.join(m for m in ('jobq.worker', 'jobq.spool', 'jobq.api', 'anyio')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
