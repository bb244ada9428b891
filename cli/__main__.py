"""`python -m cli ...` is the `chorus` command."""

from cli.app import main

main()
