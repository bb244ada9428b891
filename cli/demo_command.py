"""`chorus demo`: the command; the demo itself is the cli/demo/ package."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from cli.chain_checks import load_checked_chain
from cli.console import configure_logging, console, err_console, fail, load_settings


def demo(
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object (logs go to stderr)")
    ] = False,
    interactive: Annotated[
        bool,
        typer.Option(
            "--interactive",
            help="leave the approvals to you in the inbox: prints its address and a "
            "reviewer key, and waits for the runs however long you take",
        ),
    ] = False,
) -> None:
    """Run the flagship chain, support_triage, on five sample support tickets.

    Shows each ticket's path (cheap or grounded strong answer, checks,
    approval), its reply and its cost per model, then the routed cost against
    sending every ticket to the strong model. Starts the dev stack if none is
    running and stops what it started; see cli/demo/. With --interactive a
    person decides the two approvals in the reviewer inbox.
    """
    settings = load_settings()
    configure_logging(settings)
    from cli.demo.errors import DemoError
    from cli.demo.run import DEMO_CHAIN, run_demo

    spec = load_checked_chain(DEMO_CHAIN, settings)
    try:
        code = asyncio.run(
            run_demo(
                settings,
                spec,
                as_json=as_json,
                console=console,
                err_console=err_console,
                interactive=interactive,
            )
        )
    except DemoError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: stopped what the demo started[/]")
        raise typer.Exit(130) from None
    raise typer.Exit(code)
