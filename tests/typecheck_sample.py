"""Type-checked by mypy (``make typecheck`` and tests/test_typing.py), never run.

``enqueue`` carries the decorated function's signature (ParamSpec) and its return type. The
wrong calls at the end are type errors on purpose: ``warn_unused_ignores`` makes mypy fail if
any of them stops being one.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

import jobq


@jobq.job
async def add(x: int, y: int) -> int:
    """An async job."""
    return x + y


@jobq.job(queue="mail", retries=3, timeout=30)
def send(to: str, subject: str = "") -> bool:
    """A sync job with a default argument."""
    return bool(to and subject)


spool = jobq.Spool("/tmp/typecheck-spool")


@spool.job(priority=5)
async def names(count: int) -> list[str]:
    """A job bound to an explicit spool."""
    return ["x"] * count


async def producer() -> None:
    """Every call here is typed precisely."""
    handle = await add.enqueue(1, 2)
    assert_type(handle, jobq.JobHandle[int])
    assert_type(await handle.result(), int)
    assert_type(await handle.result(timeout=5), int)
    assert_type(await handle.state(), str)
    assert_type(await add.enqueue(1, y=2), jobq.JobHandle[int])
    assert_type(await add.options(delay=10, priority=9, key="k").enqueue(1, 2), jobq.JobHandle[int])
    assert_type(await add.enqueue_many([(1, 2), (3, 4)]), list[jobq.JobHandle[int]])
    assert_type(add.enqueue_sync(1, 2), jobq.JobHandle[int])
    call = assert_type(add(1, 2), Coroutine[Any, Any, int])  # a plain call runs in-process
    assert_type(await call, int)

    assert_type(await send.enqueue("a@example.com", subject="hi"), jobq.JobHandle[bool])
    assert_type(send.enqueue_sync("a@example.com"), jobq.JobHandle[bool])
    assert_type(send("a@example.com"), bool)
    assert_type(await (await names.enqueue(3)).result(), list[str])

    await add.enqueue("x", 2)  # type: ignore[arg-type]
    await add.enqueue(1)  # type: ignore[call-arg]
    send.enqueue_sync("a@example.com", subject=3)  # type: ignore[arg-type]
    send.enqueue_sync("a@example.com", body="")  # type: ignore[call-arg]
