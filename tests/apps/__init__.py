"""App packages for tests: modules whose ``@job`` functions real worker processes import.

A worker started with ``cwd=tests/`` imports them as ``apps.<module>``; the test process
imports the same modules (pytest puts ``tests/`` on ``sys.path``) to enqueue their jobs.
"""
