"""The long-running processes: `chorus dev` (the whole dev stack, see
cli/devstack/), `chorus worker`, `chorus simulator` and `chorus api`."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from cli.console import configure_logging, console, err_console, fail, load_settings
from core.settings import Settings


def dev() -> None:
    """Start Temporal (with UI), the simulator, a worker and the API until Ctrl-C.

    Services already running on the configured addresses are reused, not
    restarted, and only what this command started is stopped. A simulator,
    worker or API that crashes is restarted (a few times a minute at most).
    One `chorus dev` per state directory: a second one exits at once.
    """
    settings = load_settings()
    configure_logging(settings)
    code = asyncio.run(_dev(settings))
    raise typer.Exit(code)


async def _dev(settings: Settings) -> int:
    from cli.devstack.errors import DevStackError
    from cli.devstack.stack import DevStack

    stack = DevStack(settings, exclusive=True)
    try:
        await stack.start()
    except DevStackError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 1
    _print_stack(stack)

    def say(message: str) -> None:
        console.print(f"[yellow]dev stack:[/] {escape(message)}", highlight=False)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stop_wait = asyncio.create_task(stop.wait())
    supervisor = asyncio.create_task(stack.supervise(say))
    try:
        await asyncio.wait({stop_wait, supervisor}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (stop_wait, supervisor):
            task.cancel()
        code = 0
        if supervisor.done() and not supervisor.cancelled():
            err_console.print(
                f"[bold red]error:[/] {escape(str(supervisor.exception()))}", highlight=False
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

    rows = [("Temporal", stack.temporal_address, origin("temporal"))]
    rows.append(("Temporal UI", stack.ui_url, ""))
    if stack.with_codec:
        rows.append(("Codec server", stack.codec_url, origin("codec") + "  payloads encrypted"))
    if stack.with_simulator:
        rows.append(("Simulator", stack.simulator_url, origin("simulator")))
    if stack.with_worker:
        rows.append(("Worker", f"task queue {stack.settings.task_queue}", origin("worker")))
    if stack.with_api:
        rows.append(("API", f"{stack.api_url}  (docs: /docs)", origin("api")))
        rows.append(("Inbox", stack.inbox_url, "sign in with a reviewer or admin API key"))
    for service, label in (("worker", "Worker metrics"), ("api", "API metrics")):
        if (url := stack.metrics_url(service)) is not None:
            rows.append((label, url, "Prometheus"))
    rows.append(("State", str(stack.state_dir), ""))
    rows.append(("Logs", str(stack.log_dir), ""))
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(Panel(table, title="chorus dev", subtitle="Ctrl-C to stop", expand=False))


def worker() -> None:
    """Run a worker against CHORUS_TEMPORAL_ADDRESS until SIGINT/SIGTERM."""
    settings = load_settings()
    configure_logging(settings)
    from core.metrics import MetricsStartError
    from core.temporal import TemporalConnectError
    from store.schema import SchemaNotCurrent
    from worker.assembly import run_worker

    try:
        asyncio.run(run_worker(settings))
    except (TemporalConnectError, MetricsStartError, SchemaNotCurrent) as exc:
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
