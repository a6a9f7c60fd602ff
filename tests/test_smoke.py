"""The shortest path through the product: enqueue, run a burst worker, read results."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import jobq

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.anyio


@jobq.job(name="tests.smoke.double")
async def double(x: int) -> int:
    return 2 * x


@jobq.job(name="tests.smoke.shout")
def shout(word: str) -> str:
    return word.upper()


async def test_enqueue_run_result(spool_path: Path) -> None:
    first = await double.enqueue(21)
    second = await shout.enqueue("hi")
    await jobq.Worker().run(burst=True)
    assert await first.result(timeout=5) == 42
    assert await second.result(timeout=5) == "HI"
    assert await first.state() == "done"
    assert (spool_path / "done" / "default" / f"{first.id}.json").is_file()
