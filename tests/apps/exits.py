"""An app module that calls ``sys.exit`` while it is imported, as a script-minded app might."""

from __future__ import annotations

import sys

sys.exit("no config")
