"""``python -m jobq`` runs the command line."""

from jobq.cli import main

main()
