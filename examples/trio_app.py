"""trio: jobs written for trio, a worker on trio, and a trio program that waits for results.

    jobq worker trio_app --backend trio         # in examples/, in one terminal
    python trio_app.py                           # in examples/, in another

The jobs use trio directly (a nursery, ``trio.sleep``, ``trio.fail_after``), so they need a
worker started with ``--backend trio``. The producer side works on either event loop.
"""

from __future__ import annotations

import sniffio
import trio

import jobq


# Explicit names: this file is also run as a script, where its module is called `__main__`.
@jobq.job(name="trio_app.fetch_all")
async def fetch_all(urls: list[str]) -> dict[str, object]:
    """Fetch several pages at once in a trio nursery (simulated: no network here)."""
    sizes: dict[str, int] = {}

    async def fetch(url: str) -> None:
        with trio.fail_after(5):
            await trio.sleep(0.01)  # stands for an HTTP request (httpx works on trio)
            sizes[url] = len(url) * 100

    async with trio.open_nursery() as nursery:
        for url in urls:
            nursery.start_soon(fetch, url)
    return {"backend": sniffio.current_async_library(), "sizes": dict(sorted(sizes.items()))}


@jobq.job(name="trio_app.never_done", timeout=0.5)
async def never_done() -> None:
    """Wait forever: its timeout cancels it, like any trio cancellation."""
    await trio.sleep_forever()


async def main() -> None:
    """Enqueue the jobs from trio and print what came back."""
    pages = await fetch_all.enqueue(["https://example.org/a", "https://example.org/bb"])
    result = await pages.result(timeout=30)
    print(f"fetched on {result['backend']}: {result['sizes']}")
    stuck = await never_done.enqueue()
    try:
        await stuck.result(timeout=30)
    except jobq.JobFailed as exc:
        print(f"never_done failed with {exc.error_type}: {exc.error_message}")


if __name__ == "__main__":
    trio.run(main)
