"""``python -m node.cli``: how node processes are started (``node.cluster``, ``chaos``)."""

from node.cli import main

main()
