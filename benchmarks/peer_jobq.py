"""The benchmark's no-op job for jobq (imported by ``jobq worker peer_jobq``)."""

from __future__ import annotations

import jobq


@jobq.job(name="peer.noop")
async def noop() -> int:
    """Does nothing; returns 1 so that a result is recorded, as for Huey."""
    return 1
