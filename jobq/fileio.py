"""Async file I/O for results and logs, on whichever backend is running.

aiofiles only works under asyncio (under trio it raises ``RuntimeError: no running event
loop``), so this module is the one place that picks: aiofiles on asyncio, anyio's file API on
trio. Everything else calls these functions and never asks which loop it is on.
"""

from __future__ import annotations

import asyncio
import os
from typing import Literal

import aiofiles
import anyio

__all__ = ("append_text", "on_asyncio", "read_bytes", "read_text_from", "write_bytes")


def on_asyncio() -> bool:
    """Whether the running event loop is asyncio's (anyio's other backend is trio).

    aiofiles needs a running asyncio loop; under trio there is none.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def read_bytes(path: str | os.PathLike[str]) -> bytes:
    """Read a whole file."""
    if on_asyncio():
        async with aiofiles.open(path, "rb") as f:
            return await f.read()
    async with await anyio.open_file(path, "rb") as af:
        return await af.read()


async def read_text_from(path: str | os.PathLike[str], offset: int) -> tuple[str, int]:
    """Read text from byte ``offset`` to the end; returns the text and the new offset."""
    if on_asyncio():
        async with aiofiles.open(path, "rb") as f:
            await f.seek(offset)
            data = await f.read()
    else:
        async with await anyio.open_file(path, "rb") as af:
            await af.seek(offset)
            data = await af.read()
    return data.decode("utf-8", errors="replace"), offset + len(data)


async def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Create (mode 0600) or truncate a file and write ``data`` (not atomic: for private files)."""
    await _write(path, "wb", data)


async def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` (UTF-8) to a file, creating it with mode 0600 if missing.

    One thread hop for open, write and close on both backends: a worker flushes each logging
    job's lines this way, and the three hops of aiofiles or anyio's files cost it 10-40% of
    its throughput on such jobs (docs/performance.md).
    """
    await anyio.to_thread.run_sync(_append, os.fspath(path), text.encode("utf-8"))


def _append(path: str, data: bytes) -> None:
    fd = _private_opener(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


async def _write(path: str | os.PathLike[str], mode: Literal["wb", "ab"], data: bytes) -> None:
    if on_asyncio():
        async with aiofiles.open(path, mode, opener=_private_opener) as f:
            await f.write(data)
        return
    async with await anyio.open_file(path, mode, opener=_private_opener) as af:
        await af.write(data)


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
