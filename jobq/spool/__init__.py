"""The spool directory: layout, atomic publish, claim, commit and requeue.

This package is the only code that renames or fsyncs: ``files`` holds the primitives,
``marker`` the format marker, ``jobs`` moves job files through their states, ``publish``
writes new ones (``journal``: producer journals), ``commits`` records outcomes, ``store``
adds lookups, worker registrations, the spool clock, cancel requests and the collection of
leftovers.
"""

from jobq.spool.files import list_names
from jobq.spool.jobs import Claimed, Finish
from jobq.spool.store import SpoolDir

__all__ = ("Claimed", "Finish", "SpoolDir", "list_names")
