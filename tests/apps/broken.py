"""An app module that raises while it is imported, as a misconfigured app would."""

from __future__ import annotations

raise RuntimeError("the database URL is not configured")
