"""``jobq.testing``: the ``jobq_spool`` fixture and ``run_jobs()``, on asyncio and trio.

Used here directly (the fixture imported) and, through pytester, the way an app's test
suite uses it: loaded from its conftest, with a failing job failing the test with a message
that names the job and its error.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

import jobq
from jobq.testing import FailedJobs, jobq_spool, run_jobs

if TYPE_CHECKING:
    from pathlib import Path

pytest_plugins = ["pytester"]
__all__ = ("jobq_spool",)  # the fixture, imported rather than loaded as a plugin here


class Declined(Exception):
    """What ``charge`` raises for a card it declines."""


@jobq.job(name="plugin.double")
async def double(x: int) -> int:
    """Twice ``x``."""
    return 2 * x


@jobq.job(name="plugin.charge", retries=1, retry_delay=0.01)
def charge(card: str) -> str:
    """Charge ``card``; declines cards that start with "bad"."""
    if card.startswith("bad"):
        raise Declined(f"card {card} declined")
    return f"charged {card}"


@pytest.mark.anyio
async def test_run_jobs_runs_every_runnable_job(jobq_spool: jobq.Spool, tmp_path: Path) -> None:
    assert jobq_spool.path == str(tmp_path / "jobq-spool")
    assert jobq.config.default_spool_path() == jobq_spool.path
    assert os.environ["JOBQ_SPOOL"] == jobq_spool.path
    handles = [await double.enqueue(i) for i in range(5)]
    card = await charge.enqueue("visa")
    run = await run_jobs()
    assert run.processed == 6
    assert run.failed == []
    assert [await h.result(timeout=1) for h in handles] == [0, 2, 4, 6, 8]
    assert await card.result(timeout=1) == "charged visa"


@pytest.mark.anyio
async def test_run_jobs_raises_naming_each_failed_job(jobq_spool: jobq.Spool) -> None:
    good = await charge.enqueue("visa")
    bad = [await charge.enqueue("bad-1"), await charge.enqueue("bad-2")]
    with pytest.raises(FailedJobs) as caught:
        await run_jobs()
    assert await good.result(timeout=1) == "charged visa"  # the others still ran
    failed = sorted(caught.value.failed, key=lambda f: f.error_message)
    assert [f.id for f in failed] == [h.id for h in bad]
    assert all(f.name == "plugin.charge" and f.queue == "default" for f in failed)
    assert [f.attempts for f in failed] == [2, 2]  # its retry ran before the failure counted
    assert {f.error_type for f in failed} == {f"{__name__}.Declined"}
    message = str(caught.value)
    assert message.startswith("2 job(s) failed:\n")
    for handle, n in zip(bad, (1, 2), strict=True):
        assert (
            f"job plugin.charge ({handle.id}, queue default, 2 attempt(s)) failed with "
            f"{__name__}.Declined: card bad-{n} declined"
        ) in message
        assert f"traceback of job plugin.charge ({handle.id}):" in message
    assert 'raise Declined(f"card {card} declined")' in message


@pytest.mark.anyio
async def test_only_jobs_that_failed_during_the_run_count(jobq_spool: jobq.Spool) -> None:
    await charge.enqueue("bad-card")
    first = await run_jobs(raise_on_failure=False)
    assert [f.error_message for f in first.failed] == ["card bad-card declined"]
    await double.enqueue(1)
    second = await run_jobs()  # the earlier failure is not this run's: no raise
    assert second.failed == []
    assert second.processed == 1


CONFTEST = """
import pytest

pytest_plugins = ["jobq.testing"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param
"""

TESTS = """
import os

import pytest

import jobq
from jobq.testing import run_jobs

pytestmark = pytest.mark.anyio
DEFAULT = jobq.config.default_spool_path()


@jobq.job(name="app.add")
async def add(x, y):
    return x + y


@jobq.job(name="app.explode")
def explode(message):
    raise ValueError(message)


async def test_passes(jobq_spool):
    handle = await add.enqueue(2, 3)
    await run_jobs()
    assert await handle.result(timeout=1) == 5
    assert os.path.exists(os.path.join(jobq_spool.path, "done", "default", handle.id + ".json"))


async def test_fails(jobq_spool):
    await add.enqueue(1, 1)
    await explode.enqueue("the payment service is down")
    await run_jobs()


def test_the_default_spool_is_back():
    assert jobq.config.default_spool_path() == DEFAULT
    assert "jobq-spool" not in os.environ.get("JOBQ_SPOOL", "")
"""


def test_the_plugin_in_an_app_test_suite(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_app=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_passes[[]asyncio[]] PASSED*",
            "*test_passes[[]trio[]] PASSED*",
            "*test_fails[[]asyncio[]] FAILED*",
            "*test_fails[[]trio[]] FAILED*",
            "*test_the_default_spool_is_back PASSED*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*FailedJobs: 1 job(s) failed:",
            "*job app.explode (*, queue default, 1 attempt(s)) failed with ValueError: "
            "the payment service is down",
            "*traceback of job app.explode (*):",
            "*raise ValueError(message)",
        ]
    )
