"""``python -m vitaltwin``: the command line (the same as the ``vitaltwin`` command)."""

from vitaltwin.cli import main

main()
