"""How waiting loops pace themselves between looks at the spool.

Polling is the truth on every filesystem (network filesystems deliver no change events); the
pace starts fast, so a job that finishes at once is seen at once, and slows down to a bounded
interval, so an idle waiter costs next to nothing.
"""

from __future__ import annotations

__all__ = ("Backoff",)


class Backoff:
    """Growing sleep intervals: ``first``, then times ``factor`` each call, capped at ``cap``.

    Args:
        first: the first interval in seconds.
        cap: the longest interval in seconds.
        factor: growth per call.
    """

    def __init__(self, first: float = 0.0005, cap: float = 0.05, factor: float = 1.5) -> None:
        self.first = first
        self.cap = cap
        self.factor = factor
        self._next = first

    def next(self) -> float:
        """The next interval to sleep."""
        current = self._next
        self._next = min(self.cap, current * self.factor)
        return current

    def reset(self) -> None:
        """Start again from the first interval (something happened)."""
        self._next = self.first
