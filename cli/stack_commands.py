"""The long-running processes: `chorus dev` (the whole dev stack, see
cli/devstack.py), `chorus worker`, `chorus simulator` and `chorus api`."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from cli.console import configure_logging, console, err_console, fail, load_settings
from core.settings import Settings


def dev() -> None:
    """Start Temporal (with UI), the simulator, a worker and the API until Ctrl-C.

    Services already running on the configured addresses are reused, not
    restarted, and only what this command started is stopped.
    """
    settings = load_settings()
    configure_logging(settings)
    code = asyncio.run(_dev(settings))
    raise typer.Exit(code)


async def _dev(settings: Settings) -> int:
    from cli.devstack import DevStack, DevStackError

    stack = DevStack(settings)
    try:
        await stack.start()
    except DevStackError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 1
    _print_stack(stack)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stop_wait = asyncio.create_task(stop.wait())
    crash_wait = asyncio.create_task(stack.wait_for_exit())
    try:
        await asyncio.wait({stop_wait, crash_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stop_wait, crash_wait):
            task.cancel()
        code = 0
        if crash_wait.done() and not crash_wait.cancelled():
            crashed = crash_wait.result()
            err_console.print(
                f"[bold red]{crashed.name} exited with code {crashed.process.returncode}[/]; "
                f"last lines of {crashed.log_path}:\n{crashed.log_tail()}",
                highlight=False,
                markup=False,
            )
            code = 1
        console.print("stopping…")
        await stack.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return code


def _print_stack(stack: Any) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_column(style="dim")

    def origin(name: str) -> str:
        if name in stack.started:
            return f"started, pid {stack.started[name].pid}"
        return "already running" if name in stack.reused else ""

    table.add_row("Temporal", stack.temporal_address, origin("temporal"))
    table.add_row("Temporal UI", stack.ui_url, "")
    if stack.with_simulator:
        table.add_row("Simulator", stack.simulator_url, origin("simulator"))
    if stack.with_worker:
        table.add_row("Worker", f"task queue {stack.settings.task_queue}", origin("worker"))
    if stack.with_api:
        table.add_row("API", f"{stack.api_url}  (docs: /docs)", origin("api"))
    table.add_row("State", str(stack.state_dir), "")
    table.add_row("Logs", str(stack.log_dir), "")
    console.print(Panel(table, title="chorus dev", subtitle="Ctrl-C to stop", expand=False))


def worker() -> None:
    """Run a worker against CHORUS_TEMPORAL_ADDRESS until SIGINT/SIGTERM."""
    settings = load_settings()
    configure_logging(settings)
    from core.temporal import TemporalConnectError
    from worker.assembly import run_worker

    try:
        asyncio.run(run_worker(settings))
    except TemporalConnectError as exc:
        fail(str(exc))


def simulator(
    host: Annotated[str | None, typer.Option(help="default: CHORUS_SIMULATOR_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: CHORUS_SIMULATOR_PORT")] = None,
    config: Annotated[
        Path | None, typer.Option(help="simulator config file (models, latency, prices)")
    ] = None,
) -> None:
    """Run the model SIMULATOR (OpenAI-compatible, offline) in the foreground."""
    settings = load_settings()
    configure_logging(settings)
    from simulator.server import SimulatorStartError, serve

    config_path = config or settings.simulator_config
    try:
        serve(
            host or settings.simulator_host,
            port or settings.simulator_port,
            str(config_path) if config_path else None,
            log_level=settings.log_level,
        )
    except SimulatorStartError as exc:
        fail(str(exc))


def api(
    host: Annotated[str | None, typer.Option(help="default: CHORUS_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: CHORUS_API_PORT")] = None,
) -> None:
    """Serve the HTTP API (runs, approvals, chains, keys) until SIGINT/SIGTERM."""
    settings = load_settings()
    configure_logging(settings)
    from api.server import ApiStartError, serve

    try:
        serve(settings, host=host, port=port)
    except ApiStartError as exc:
        fail(str(exc))
