"""``python -m decay``: the ``decay`` command line, which lives in decay_cli (not in the core)."""

from decay_cli.cli import main

main()
