"""`python -m worker ...` is the `chorus` command (the dev stack starts workers this way)."""

from worker.cli import main

main()
