"""An app module that raises while it is imported: a setting it reads is missing."""

from __future__ import annotations

import os

DATABASE_URL = dict(os.environ)["JOBQ_TEST_SURELY_UNSET_DATABASE_URL"]  # KeyError at import
