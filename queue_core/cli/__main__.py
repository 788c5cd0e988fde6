"""`python -m queue_core.cli ...` runs the `prismq-queue` command (used to spawn workers)."""

from queue_core.cli import main

main()
