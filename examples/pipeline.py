"""A dependency chain: fetch pages, count their words, then report, with ``after=``.

    jobq worker pipeline                         # in examples/, in one terminal
    python pipeline.py                           # in examples/, in another

A job enqueued with ``.options(after=[...])`` waits in state ``waiting`` until every job it
names is ``done``; then it runs like any other and reads their results through their ids. If
one of them fails, the jobs waiting for it are cancelled and ``result()`` raises
``jobq.DependencyFailed``.
"""

from __future__ import annotations

import anyio

import jobq


# Explicit names: this file is also run as a script, where its module is called `__main__`.
@jobq.job(name="pipeline.fetch", retries=0)
async def fetch(url: str) -> str:
    """Fetch a page (simulated: no network here); an URL with "broken" in it fails."""
    await anyio.sleep(0.01)
    if "broken" in url:
        raise ConnectionError(f"cannot reach {url}")
    return f"the page at {url} has seven words"


@jobq.job(name="pipeline.count_words")
async def count_words(fetch_id: str) -> int:
    """Count the words of a fetched page: its fetch job is done when this one runs."""
    text: str = await jobq.Spool().get(fetch_id).result(timeout=5)
    return len(text.split())


@jobq.job(name="pipeline.report")
async def report(count_ids: list[str]) -> dict[str, int]:
    """Sum up the word counts of every page."""
    counts = [await jobq.Spool().get(i).result(timeout=5) for i in count_ids]
    return {"pages": len(counts), "words": sum(counts)}


async def main() -> None:
    """Enqueue the whole chain at once and wait for its end."""
    urls = ["https://example.org/a", "https://example.org/b", "https://example.org/c"]
    fetches = [await fetch.enqueue(url) for url in urls]
    counts = [await count_words.options(after=[f]).enqueue(f.id) for f in fetches]
    summary = await report.options(after=counts).enqueue([c.id for c in counts])
    print("report:", await summary.result(timeout=60))

    broken = await fetch.enqueue("https://broken.example.org")
    orphan = await count_words.options(after=[broken]).enqueue(broken.id)
    try:
        await orphan.result(timeout=60)
    except jobq.DependencyFailed as exc:
        print("count_words was not run:", exc)


if __name__ == "__main__":
    anyio.run(main)
