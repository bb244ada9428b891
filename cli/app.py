"""`chorus`: the command line of Chorus.

    chorus dev                    Temporal dev server + simulator + worker + API, until Ctrl-C
    chorus worker                 a worker against CHORUS_TEMPORAL_ADDRESS
    chorus api                    the HTTP API on CHORUS_API_HOST:CHORUS_API_PORT
    chorus simulator              the model simulator in the foreground
    chorus validate CHAIN         check a chain spec against the model registry
    chorus run CHAIN --input JSON run a chain and watch its steps
    chorus demo                   the flagship chain on five sample support tickets
    chorus ingest COLL PATH...    add documents to a knowledge collection

Every command reads its configuration from `CHORUS_*` environment variables
(see core/settings.py). Output meant for people goes to stdout through rich;
logs go to stderr, so `chorus demo --json | jq` stays clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console, Group
from rich.json import JSON
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from core.settings import Settings, get_settings

app = typer.Typer(
    name="chorus",
    help="Chorus: durable multi-model LLM chains on Temporal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

_POLL_INTERVAL_S = 0.25


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error for people and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        fail(f"invalid settings: {exc}")


def _configure_logging(settings: Settings) -> None:
    from core.logging import configure_logging

    configure_logging(settings)


def _problems(exc: BaseException) -> list[str]:
    """The individual problems of a validation error, each with its path when
    the error carries them."""
    problems = getattr(exc, "problems", None)
    if not problems:
        return [str(exc)]
    lines = []
    for problem in problems:
        path = getattr(problem, "path", None)
        message = getattr(problem, "message", None)
        lines.append(f"{path}: {message}" if path is not None and message else str(problem))
    return lines


def _print_problems(title: str, exc: BaseException) -> None:
    err_console.print(f"[bold red]{title}[/]", highlight=False)
    for line in _problems(exc):
        err_console.print(f"  • {line}", highlight=False, markup=False)


# --------------------------------------------------------------------- dev


@app.command()
def dev() -> None:
    """Start Temporal (with UI), the simulator, a worker and the API until Ctrl-C.

    Services already running on the configured addresses are reused, not
    restarted, and only what this command started is stopped.
    """
    settings = _settings()
    _configure_logging(settings)
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


# ------------------------------------------------------------ worker, sim


@app.command()
def worker() -> None:
    """Run a worker against CHORUS_TEMPORAL_ADDRESS until SIGINT/SIGTERM."""
    settings = _settings()
    _configure_logging(settings)
    from core.temporal import TemporalConnectError
    from worker.assembly import run_worker

    try:
        asyncio.run(run_worker(settings))
    except TemporalConnectError as exc:
        fail(str(exc))


@app.command()
def simulator(
    host: Annotated[str | None, typer.Option(help="default: CHORUS_SIMULATOR_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: CHORUS_SIMULATOR_PORT")] = None,
    config: Annotated[
        Path | None, typer.Option(help="simulator config file (models, latency, prices)")
    ] = None,
) -> None:
    """Run the model SIMULATOR (OpenAI-compatible, offline) in the foreground."""
    settings = _settings()
    _configure_logging(settings)
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


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="default: CHORUS_API_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: CHORUS_API_PORT")] = None,
) -> None:
    """Serve the HTTP API (runs, approvals, chains, keys) until SIGINT/SIGTERM."""
    settings = _settings()
    _configure_logging(settings)
    from api.server import ApiStartError, serve

    try:
        serve(settings, host=host, port=port)
    except ApiStartError as exc:
        fail(str(exc))


# ---------------------------------------------------------------- validate


def _known_aliases(settings: Settings) -> set[str]:
    from activities.gateway.registry import ModelRegistry, RegistryError

    try:
        registry = ModelRegistry.from_file(
            settings.models_file, simulator_base_url=settings.simulator_base_url
        )
    except (RegistryError, OSError) as exc:
        fail(f"cannot load the model registry {settings.models_file}: {exc}")
    return set(registry.aliases)


def _known_tools(settings: Settings) -> set[str]:
    from activities.tools.defaults import default_registry
    from activities.tools.errors import ToolDefinitionError

    try:
        return set(default_registry(settings).names)
    except (ToolDefinitionError, OSError) as exc:
        fail(f"cannot load the tools of {settings.tools_file}: {exc}")


def _load_checked_chain(chain: str, settings: Settings) -> Any:
    """Load a chain and check it against the model and tool registries, or
    exit 1 listing its problems."""
    from runs.catalog import ChainNotFoundError, chain_path, load_chain
    from workflows.validate import ChainSpecError, check_chain

    try:
        spec = load_chain(chain, settings)
        check_chain(spec, _known_aliases(settings), known_tools=_known_tools(settings))
    except ChainNotFoundError as exc:
        fail(str(exc))
    except ChainSpecError as exc:
        _print_problems(f"chain {chain_path(chain, settings)} has problems:", exc)
        raise typer.Exit(1) from None
    return spec


@app.command()
def validate(
    chain: Annotated[str, typer.Argument(help="chain name (in CHORUS_CHAINS_DIR) or YAML path")],
) -> None:
    """Check a chain spec against the model registry.

    Checks its shape, templates, routes and model aliases; exits 1 when
    anything is wrong, listing each problem with its path.
    """
    settings = _settings()
    spec = _load_checked_chain(chain, settings)
    console.print(
        f"[green]✓[/] chain [bold]{spec.name}[/] v{spec.version} is valid "
        f"({len(spec.steps)} top-level steps)"
    )


# --------------------------------------------------------------------- run


def _read_input(input_json: str | None, input_file: Path | None) -> Any:
    if input_json is not None and input_file is not None:
        fail("give either --input or --input-file, not both")
    if input_file is not None:
        try:
            text = input_file.read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"cannot read --input-file {input_file}: {exc}")
        try:
            if input_file.suffix in (".yaml", ".yml"):
                return yaml.safe_load(text)
            return json.loads(text)
        except (ValueError, yaml.YAMLError) as exc:
            fail(f"--input-file {input_file} is not valid JSON/YAML: {exc}")
    if input_json is None:
        return None
    try:
        return json.loads(input_json)
    except ValueError as exc:
        fail(f"--input is not valid JSON ({exc}); quote a plain string as '\"text\"'")


@app.command()
def run(
    chain: Annotated[str, typer.Argument(help="chain name (in CHORUS_CHAINS_DIR) or YAML path")],
    input_json: Annotated[
        str | None, typer.Option("--input", "-i", help="run input as JSON")
    ] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input-file", "-f", help="run input from a JSON/YAML file")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--id", help="workflow id (default: CHAIN-<random>)")
    ] = None,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", help="cap on this run's cost in USD")
    ] = None,
    no_wait: Annotated[
        bool, typer.Option("--no-wait", help="start the run and exit without waiting")
    ] = False,
) -> None:
    """Run a chain and show its steps live, then its output and cost.

    The chain and the input are validated before anything starts; exits
    non-zero when the run fails.
    """
    settings = _settings()
    _configure_logging(settings)
    from workflows.validate import ChainSpecError, validate_input

    spec = _load_checked_chain(chain, settings)
    value = _read_input(input_json, input_file)
    problems = validate_input(spec, value)
    if problems:
        _print_problems(f"input does not match chain {spec.name!r}:", ChainSpecError(problems))
        raise typer.Exit(1)
    workflow_id = run_id or f"{spec.name}-{uuid.uuid4().hex[:12]}"
    code = asyncio.run(_run(settings, spec, value, workflow_id, max_cost, wait=not no_wait))
    raise typer.Exit(code)


async def _start_chain(
    client: Any, settings: Settings, spec: Any, value: Any, workflow_id: str, max_cost: float | None
) -> Any:
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    from core.search_attributes import CHAIN_KEY, STATUS_KEY
    from workflows.types import WORKFLOW_NAME, ChainInput, ChainResult

    return await client.start_workflow(
        WORKFLOW_NAME,
        ChainInput(spec=spec, input=value, max_cost_usd=max_cost),
        id=workflow_id,
        task_queue=settings.task_queue,
        result_type=ChainResult,
        search_attributes=TypedSearchAttributes(
            [SearchAttributePair(CHAIN_KEY, spec.name), SearchAttributePair(STATUS_KEY, "running")]
        ),
        static_summary=f"chain {spec.name} v{spec.version}",
    )


async def _warn_if_no_worker(client: Any, settings: Settings) -> None:
    """A run on a queue nobody polls waits forever: say so up front."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.service import RPCError

    try:
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=settings.temporal_namespace,
                task_queue=TaskQueue(name=settings.task_queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=3),
        )
    except RPCError:
        return
    if not response.pollers:
        err_console.print(
            f"[yellow]warning:[/] no worker polls task queue {settings.task_queue!r}; "
            "the run waits until one does (`chorus worker` or `chorus dev`)",
            highlight=False,
        )


async def _run(
    settings: Settings,
    spec: Any,
    value: Any,
    workflow_id: str,
    max_cost: float | None,
    *,
    wait: bool,
) -> int:
    from temporalio.client import WorkflowFailureError
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from core.temporal import TemporalConnectError, connect

    try:
        client = await connect(settings)
    except TemporalConnectError as exc:
        fail(str(exc))
    await _warn_if_no_worker(client, settings)
    try:
        handle = await _start_chain(client, settings, spec, value, workflow_id, max_cost)
    except WorkflowAlreadyStartedError:
        fail(f"a run with id {workflow_id!r} already exists; pick another --id")
    ns = settings.temporal_namespace
    ui = f"{settings.temporal_ui_url}/namespaces/{ns}/workflows/{workflow_id}"
    err_console.print(f"started run [bold]{workflow_id}[/]  {ui}", highlight=False)
    if not wait:
        console.print(workflow_id)
        return 0

    try:
        result = await _await_with_progress(handle)
    except WorkflowFailureError as exc:
        partial = _partial_result(exc)
        if partial is not None:
            render_result(partial)
        fail(f"run {workflow_id} failed: {_failure_message(exc)}")
    render_result(result)
    return 0 if result.status == "completed" else 1


async def _await_with_progress(handle: Any) -> Any:
    """Wait for the result, showing the `state` query as a live table when
    stdout is a terminal."""
    result_task = asyncio.create_task(handle.result())
    if not console.is_terminal:
        return await result_task
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    from workflows.types import STATE_QUERY, RunState

    with Live(Text("starting…"), console=console, refresh_per_second=8, transient=True) as live:
        while not result_task.done():
            try:
                state = await handle.query(
                    STATE_QUERY, result_type=RunState, rpc_timeout=timedelta(seconds=2)
                )
                live.update(render_state(state))
            except (RPCError, WorkflowQueryFailedError):
                pass  # not picked up by a worker yet: keep waiting
            await asyncio.wait({result_task}, timeout=_POLL_INTERVAL_S)
    return await result_task


def _partial_result(exc: BaseException) -> Any:
    """The partial ChainResult a failed run attaches to its ApplicationError."""
    from temporalio.exceptions import ApplicationError

    from workflows.types import ChainResult

    cause = getattr(exc, "cause", None)
    if isinstance(cause, ApplicationError) and cause.details:
        with contextlib.suppress(ValueError, TypeError):
            return ChainResult.model_validate(cause.details[0])
    return None


def _failure_message(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    while cause is not None and getattr(cause, "cause", None) is not None:
        cause = cause.cause
    if cause is None:
        return str(exc)
    kind = getattr(cause, "type", None)
    return f"{kind}: {cause}" if kind else str(cause)


# --------------------------------------------------------------- rendering

_STATUS_STYLE = {"running": "yellow", "completed": "green", "failed": "red"}


def render_state(state: Any) -> Table:
    """Live view of a run (the `state` query) for `chorus run`."""
    table = Table(
        title=f"{state.chain} v{state.version} — {state.status}", title_justify="left", expand=False
    )
    table.add_column("step")
    table.add_column("kind")
    table.add_column("status")
    table.add_column("model")
    table.add_column("cost (USD)", justify="right")
    for name, step in state.steps.items():
        style = _STATUS_STYLE.get(step.status, "")
        table.add_row(
            name,
            step.kind,
            Text(step.status, style=style),
            step.model or "",
            f"{step.cost_usd:.6f}",
        )
    for name in state.current_steps:
        if name not in state.steps:
            table.add_row(name, "", Text("running", style="yellow"), "", "")
    table.caption = f"spent ${state.usage.cost_usd:.6f}"
    return table


def usage_table(result: Any) -> Table:
    """Per-model calls, tokens, latency and cost of a run, with a total row."""
    table = Table(title="usage by model", title_justify="left")
    table.add_column("model")
    table.add_column("calls", justify="right")
    table.add_column("input tok", justify="right")
    table.add_column("output tok", justify="right")
    table.add_column("latency (ms)", justify="right")
    table.add_column("cost (USD)", justify="right")
    usage = result.usage
    for alias, model in sorted(usage.per_model.items()):
        table.add_row(
            alias,
            str(model.calls),
            str(model.usage.input_tokens),
            str(model.usage.output_tokens),
            f"{model.latency_ms:.0f}",
            f"{model.cost_usd:.6f}",
        )
    table.add_section()
    table.add_row(
        Text("total", style="bold"),
        str(sum(m.calls for m in usage.per_model.values())),
        str(usage.total.input_tokens),
        str(usage.total.output_tokens),
        "",
        Text(f"{usage.cost_usd:.6f}", style="bold"),
    )
    return table


def _output_renderable(output: Any) -> Any:
    if isinstance(output, str):
        return Text(output)
    return JSON.from_data(output, default=str)


def render_result(result: Any) -> None:
    """Print a run's outcome: status, steps taken, final output, usage and cost.

    The one place that decides what `chorus run` shows (the lead may adjust it).
    """
    style = _STATUS_STYLE.get(result.status, "")
    taken = []
    for name, step in result.steps.items():
        label = name
        if step.branch:
            label += f" → {step.branch}"
        if step.model:
            label += f" [{step.model}]"
        taken.append(label)
    header = Text.assemble(
        (f"{result.chain} v{result.version} ", "bold"), (result.status, style or "")
    )
    parts: list[Any] = [header, Text("steps: " + ", ".join(taken), style="dim")]
    if result.error:
        parts.append(Text(f"error: {result.error}", style="red"))
    console.print(Group(*parts))
    console.print(Panel(_output_renderable(result.output), title="output", expand=False))
    console.print(usage_table(result))


# -------------------------------------------------------------------- demo


@app.command()
def demo(
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object (logs go to stderr)")
    ] = False,
) -> None:
    """Run the flagship chain, support_triage, on five sample support tickets.

    Shows each ticket's path (cheap or grounded strong answer, checks,
    approval), its reply and its cost per model, then the routed cost against
    sending every ticket to the strong model. Starts the dev stack if none is
    running and stops what it started; see cli/demo.py.
    """
    settings = _settings()
    _configure_logging(settings)
    from cli.demo import DEMO_CHAIN, DemoError, run_demo

    spec = _load_checked_chain(DEMO_CHAIN, settings)
    try:
        code = asyncio.run(
            run_demo(settings, spec, as_json=as_json, console=console, err_console=err_console)
        )
    except DemoError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted: stopped what the demo started[/]")
        raise typer.Exit(130) from None
    raise typer.Exit(code)


# ------------------------------------------------------------ keys, chains

keys_app = typer.Typer(
    help="Manage API keys (stored hashed in the application database).", no_args_is_help=True
)
chains_app = typer.Typer(
    help="Publish and list chain versions in the application database.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
app.add_typer(chains_app, name="chains")


@contextlib.contextmanager
def _database(settings: Settings) -> Iterator[Any]:
    """The application database's engine, tables created if missing; a
    database error exits 1 with the (password-free) URL it concerns."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from store.engine import UnsupportedDatabaseError, make_engine
    from store.schema import create_all

    url = settings.effective_database_url
    try:
        engine = make_engine(url)
    except UnsupportedDatabaseError as exc:
        fail(str(exc))
    try:
        create_all(engine)
        yield engine
    except SQLAlchemyError as exc:
        where = make_url(url).render_as_string(hide_password=True)
        fail(f"database error on {where}: {exc}")
    finally:
        engine.dispose()


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else ""


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="who holds the key (the reviewer identity)")],
    role: Annotated[str, typer.Option(help="service, reviewer or admin")],
    approval_role: Annotated[
        list[str] | None,
        typer.Option(help="extra role the key may review as (repeatable), e.g. supervisor"),
    ] = None,
) -> None:
    """Create an API key and print it once: only its hash is stored."""
    settings = _settings()
    from store.crud import create_api_key
    from store.engine import session_scope
    from store.errors import StoreError

    with _database(settings) as engine:
        try:
            with session_scope(engine) as session:
                row, plaintext = create_api_key(
                    session, name=name, role=role, approval_roles=approval_role or []
                )
        except StoreError as exc:
            fail(str(exc))
    extra = f", may also review as {', '.join(row.approval_roles)}" if row.approval_roles else ""
    err_console.print(
        f"created {row.role} key [bold]{row.name}[/]{extra}. Copy it now: "
        "it will not be shown again.",
        highlight=False,
    )
    # The key alone on stdout, so `KEY=$(chorus keys create ...)` captures it.
    print(plaintext)


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
) -> None:
    """List API keys (never the keys themselves), revoked ones included."""
    settings = _settings()
    from store.crud import list_api_keys
    from store.engine import session_scope
    from store.models import ApiKeyPublic

    with _database(settings) as engine, session_scope(engine) as session:
        keys = [ApiKeyPublic.model_validate(row) for row in list_api_keys(session)]
    if as_json:
        print(json.dumps([key.model_dump(mode="json") for key in keys]))
        return
    table = Table(title="API keys", title_justify="left")
    for column in ("name", "role", "approval roles", "prefix", "created", "status"):
        table.add_column(column)
    for key in keys:
        status = (
            Text(f"revoked {_when(key.revoked_at)}", style="red")
            if key.revoked_at
            else Text("active", style="green")
        )
        table.add_row(
            key.name,
            key.role,
            ", ".join(key.approval_roles),
            f"{key.key_prefix}…",
            _when(key.created_at),
            status,
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="name of the key to revoke")],
) -> None:
    """Revoke the active key of that name; it stops working at once."""
    settings = _settings()
    from store.crud import revoke_api_key
    from store.engine import session_scope

    with _database(settings) as engine, session_scope(engine) as session:
        revoked = revoke_api_key(session, name=name)
    if not revoked:
        fail(f"no active API key named {name!r} (`chorus keys list` shows the keys)")
    console.print(f"revoked key [bold]{name}[/]", highlight=False)


@chains_app.command("publish")
def chains_publish(
    chain: Annotated[str, typer.Argument(help="chain name (in CHORUS_CHAINS_DIR) or YAML path")],
) -> None:
    """Validate a chain against the model registry and publish it as a new
    version (publishing an unchanged spec keeps the latest version)."""
    settings = _settings()
    spec = _load_checked_chain(chain, settings)
    from store.crud import publish_chain
    from store.engine import session_scope
    from store.errors import StoreError

    with _database(settings) as engine:
        try:
            with session_scope(engine) as session:
                result = publish_chain(session, spec=spec, created_by="cli")
        except StoreError as exc:
            fail(str(exc))
    row = result.chain_version
    if result.created:
        console.print(f"published chain [bold]{row.name}[/] v{row.version}", highlight=False)
    else:
        console.print(
            f"chain [bold]{row.name}[/] unchanged: v{row.version} has the same spec",
            highlight=False,
        )


@chains_app.command("sync")
def chains_sync() -> None:
    """Publish every chain in CHORUS_CHAINS_DIR whose spec changed (all or nothing)."""
    settings = _settings()
    aliases = _known_aliases(settings)
    from runs.catalog import sync_chain_dir
    from store.engine import session_scope
    from store.errors import StoreError

    with _database(settings) as engine:
        try:
            with session_scope(engine) as session:
                rows = sync_chain_dir(
                    session, chains_dir=settings.chains_dir, known_aliases=aliases
                )
        except StoreError as exc:
            fail(str(exc))
    for row in rows:
        console.print(f"{row.name} v{row.version}", highlight=False)


@chains_app.command("list")
def chains_list(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
) -> None:
    """List the published chains, each at its latest version."""
    settings = _settings()
    from store.crud import list_chains
    from store.engine import session_scope

    with _database(settings) as engine, session_scope(engine) as session:
        rows = list_chains(session)
    if as_json:
        from store.models import ChainVersionPublic

        items = [
            ChainVersionPublic.model_validate(row).model_dump(mode="json", exclude={"spec"})
            for row in rows
        ]
        print(json.dumps(items))
        return
    if not rows:
        console.print(
            "no chains published yet: `chorus chains sync` publishes the chains directory"
        )
        return
    table = Table(title="chains (latest versions)", title_justify="left")
    for column in ("name", "version", "description", "published", "by"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.name,
            f"v{row.version}",
            row.description or "",
            _when(row.created_at),
            row.created_by,
        )
    console.print(table)


# ------------------------------------------------------------ knowledge

INGEST_SUFFIXES = (".md", ".markdown", ".txt")


def _ingest_files(paths: list[Path]) -> list[tuple[str, Path]]:
    """(document name, file) for each path: a file under its own name, the
    .md/.markdown/.txt files of a directory (recursively) under their path
    relative to it. Exits 1 naming the first path that cannot be ingested."""
    found: list[tuple[str, Path]] = []
    for path in paths:
        if path.is_dir():
            files = sorted(
                f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in INGEST_SUFFIXES
            )
            if not files:
                fail(f"{path} has no {', '.join(INGEST_SUFFIXES)} files to ingest")
            found.extend((f.relative_to(path).as_posix(), f) for f in files)
        elif path.is_file():
            if path.suffix.lower() not in INGEST_SUFFIXES:
                fail(f"{path}: only {', '.join(INGEST_SUFFIXES)} files can be ingested")
            found.append((path.name, path))
        else:
            fail(f"{path} does not exist")
    names = [name for name, _ in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        fail(f"several files would be ingested as {', '.join(duplicates)}: ingest them separately")
    return found


@app.command()
def ingest(
    collection: Annotated[str, typer.Argument(help="knowledge collection (created if missing)")],
    paths: Annotated[list[Path], typer.Argument(help="files, or directories of .md/.txt files")],
    embedding_alias: Annotated[
        str | None,
        typer.Option(help="model alias whose embeddings rank the collection (hybrid ranking)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False,
) -> None:
    """Ingest documents into a knowledge collection: new names are added,
    changed ones replaced, unchanged ones left alone (all or nothing).
    Embeddings are computed by the worker on first retrieval."""
    settings = _settings()
    if embedding_alias is not None and embedding_alias not in _known_aliases(settings):
        fail(f"unknown model alias {embedding_alias!r} (see {settings.models_file})")
    files = _ingest_files(paths)
    texts: list[tuple[str, Path, str]] = []
    for name, path in files:
        try:
            texts.append((name, path, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {path}: {exc}")
    from store.engine import session_scope
    from store.knowledge import KnowledgeError, ensure_collection, ingest_document

    results = []
    with _database(settings) as engine:
        try:
            with session_scope(engine) as session:
                ensure_collection(session, name=collection, embedding_alias=embedding_alias)
                for name, path, text in texts:
                    try:
                        result = ingest_document(
                            session, collection=collection, name=name, source=str(path), text=text
                        )
                    except KnowledgeError as exc:
                        raise KnowledgeError(f"{path}: {exc}") from exc
                    results.append(result)
        except KnowledgeError as exc:
            fail(f"nothing was ingested: {exc}")
    rows = [
        {
            "document": r.document.name,
            "chunks": r.chunks,
            "status": "unchanged" if r.unchanged else "replaced" if r.replaced else "new",
        }
        for r in results
    ]
    if as_json:
        print(json.dumps(rows))
        return
    table = Table(title=f"knowledge collection {collection}", title_justify="left")
    for column in ("document", "chunks", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["document"], str(row["chunks"]), row["status"])
    console.print(table)
    counts = {
        s: sum(1 for row in rows if row["status"] == s) for s in ("new", "replaced", "unchanged")
    }
    console.print(
        f"{len(rows)} documents: {counts['new']} new, {counts['replaced']} replaced, "
        f"{counts['unchanged']} unchanged",
        highlight=False,
    )


def main() -> None:
    """Entry point for `python -m cli`."""
    app(prog_name="chorus")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
