"""``jobq bench``: measure a spool's filesystem (placeholder until the benchmark lands)."""

from __future__ import annotations

from typing import Any

__all__ = ("print_report", "run")


def run(root: str, count: int, durable: bool, processes: int, *, progress: bool) -> dict[str, Any]:
    """Run the benchmark."""
    raise NotImplementedError


def print_report(results: dict[str, Any]) -> None:
    """Print a human report."""
    raise NotImplementedError
