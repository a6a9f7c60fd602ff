"""The "new" app of the rolling-deploy tests: it registers a job the old one does not know."""

from __future__ import annotations

import jobq


@jobq.job(name="ops.new_job")
async def new_job(x: int) -> int:
    """A job that only the new release of the app has."""
    return 2 * x
