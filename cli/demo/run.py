"""`run_demo`: the demo from start to finish. Brings up (or reuses) the dev
stack, loads the sample knowledge, scripts the simulator, has the driver run
the tickets, then prints the report or the JSON summary, and stops what it
started whatever happens.

Interactive (`chorus demo --interactive`), the stack includes the API, whose
inbox is where a person decides the approvals: the demo prints its address
and a reviewer key made for the occasion (revoked when the demo ends), and
waits for the runs to finish however long the person takes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import TYPE_CHECKING

from cli.demo.analysis import comparison_prices
from cli.demo.driver import Driver
from cli.demo.errors import DemoError
from cli.demo.report import (
    print_banner,
    print_failures,
    print_inbox,
    print_stack,
    render_summary,
)
from cli.demo.reviewer_key import ReviewerKey, create_reviewer_key, revoke_reviewer_key
from cli.demo.simulator_script import script_verdicts
from cli.demo.summary import StackSummary, TicketRun, summarize
from cli.demo.tickets import SAMPLE_TICKETS, SampleTicket

if TYPE_CHECKING:
    from rich.console import Console

    from cli.devstack.stack import DevStack
    from core.chain_spec import ChainSpec
    from core.settings import Settings

DEMO_CHAIN = "support_triage"


def load_sample_knowledge(settings: Settings) -> dict[str, int]:
    """Ingest the Help Center and the brand guide (idempotent)."""
    from sqlalchemy.exc import SQLAlchemyError

    from store.engine import make_engine
    from store.errors import StoreError
    from store.sample_knowledge import ingest_sample_knowledge
    from store.schema import upgrade

    engine = make_engine(settings.effective_database_url)
    try:
        upgrade(engine)
        return ingest_sample_knowledge(engine)
    except (SQLAlchemyError, StoreError) as exc:
        raise DemoError(f"cannot load the sample knowledge into the database: {exc}") from exc
    finally:
        engine.dispose()


async def run_demo(
    settings: Settings,
    spec: ChainSpec,
    *,
    as_json: bool,
    console: Console,
    err_console: Console,
    tickets: tuple[SampleTicket, ...] = SAMPLE_TICKETS,
    interactive: bool = False,
) -> int:
    """Run the demo; return the exit code (0: every ticket completed).

    `interactive`: leave the approvals to a person in the inbox (see the
    module docstring). Raises DemoError when the demo cannot be set up.
    Stops what it started whatever happens, SIGTERM and Ctrl-C included.
    """
    from cli.devstack.errors import DevStackError
    from cli.devstack.stack import DevStack

    say = err_console if as_json else console
    prices = comparison_prices(settings)
    if not as_json:
        print_banner(console, spec, len(tickets))
    say.print("[dim]starting the dev stack (reusing what already runs)…[/]")

    terminated = asyncio.Event()
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def on_sigterm() -> None:
        terminated.set()
        if main is not None:
            main.cancel()

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    # The demo talks to Temporal directly; only a person needs the API (its inbox).
    stack = DevStack(settings, api=interactive)
    key: ReviewerKey | None = None
    try:
        try:
            await stack.start()
        except DevStackError as exc:
            raise DemoError(str(exc)) from exc
        print_stack(say, stack)
        inbox_url = None
        if interactive:
            key = await asyncio.to_thread(create_reviewer_key, settings)
            inbox_url = stack.inbox_url
            print_inbox(say, inbox_url, key)
        runs = await _run_tickets(settings, spec, stack, tickets, say, inbox_url)
        stack_summary = StackSummary(started=stack.pids, reused=list(stack.reused))
    except asyncio.CancelledError:
        if terminated.is_set():
            err_console.print("[yellow]terminated: stopped what the demo started[/]")
            return 143
        raise
    finally:
        if key is not None and not await asyncio.to_thread(revoke_reviewer_key, settings, key.name):
            err_console.print(
                f"[yellow]could not revoke the demo's reviewer key {key.name}: "
                f"`chorus keys revoke {key.name}` does[/]",
                highlight=False,
            )
        await stack.stop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGTERM)

    summary = summarize(
        spec, runs, prices, temporal_ui=settings.temporal_ui_url, stack=stack_summary
    )
    if as_json:
        print(summary.model_dump_json())
    else:
        render_summary(console, summary, runs, prices)
    failed = [t for t in summary.tickets if t.status != "completed"]
    print_failures(err_console, failed)
    return 1 if failed else 0


async def _run_tickets(
    settings: Settings,
    spec: ChainSpec,
    stack: DevStack,
    tickets: tuple[SampleTicket, ...],
    say: Console,
    inbox_url: str | None,
) -> list[TicketRun]:
    from core.temporal import TemporalConnectError, connect

    counts = await asyncio.to_thread(load_sample_knowledge, settings)
    say.print(
        "knowledge: "
        + ", ".join(f"{name} ({n} document{'' if n == 1 else 's'})" for name, n in counts.items())
        + " loaded into the application database",
        highlight=False,
    )
    await script_verdicts(stack.simulator_url, tickets)
    say.print(
        f"classifier verdicts scripted on the simulator for {len(tickets)} tickets; "
        "starting the runs at once…",
        highlight=False,
    )
    try:
        client = await connect(settings)
    except TemporalConnectError as exc:
        raise DemoError(str(exc)) from exc
    driver = Driver(client, settings, spec, say, inbox_url=inbox_url)
    try:
        return await driver.run_all(tickets)
    except BaseException as exc:
        reason = (
            "chorus demo interrupted"
            if isinstance(exc, asyncio.CancelledError)
            else (f"chorus demo failed: {exc}")
        )
        await driver.end_unfinished(reason)
        raise
