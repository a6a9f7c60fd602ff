"""One side of a rename race, run in a host's namespace: ``python race_actor.py DIR NAME MODE``.

For each line ``N AT`` read from stdin it spins until ``time.monotonic()`` reaches ``AT`` (the
driver gives both sides the same instant; the clock is the machine's), renames ``DIR/srcN``
to ``DIR/dstN`` (MODE ``same``: both sides use one destination name) or to ``DIR/dstN.NAME``
(MODE ``per``: a destination of its own, as jobq's claims are), and answers ``N 1`` if the
rename reported success, ``N 0`` if it failed with ENOENT.
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    """Serve rounds until stdin closes."""
    folder, name, mode = sys.argv[1:4]
    for line in sys.stdin:
        round_no, at = line.split()
        source = os.path.join(folder, f"src{round_no}")
        target = f"dst{round_no}" if mode == "same" else f"dst{round_no}.{name}"
        while time.monotonic() < float(at):
            pass
        try:
            os.rename(source, os.path.join(folder, target))
        except FileNotFoundError:
            won = 0
        else:
            won = 1
        print(round_no, won, flush=True)


if __name__ == "__main__":
    main()
