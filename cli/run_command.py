"""`chorus validate` and `chorus run`: check a chain, start a run, watch it
live and report its outcome through the exit code."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from cli.chain_checks import load_checked_chain, print_problem_details
from cli.console import configure_logging, console, err_console, fail, load_settings
from cli.run_view import render_result, render_state
from core.settings import Settings

_POLL_INTERVAL_S = 0.25


def validate(
    chain: Annotated[str, typer.Argument(help="chain name (in CHORUS_CHAINS_DIR) or YAML path")],
) -> None:
    """Check a chain spec against the model registry.

    Checks its shape, templates, routes and model aliases; exits 1 when
    anything is wrong, listing each problem with its path.
    """
    settings = load_settings()
    spec = load_checked_chain(chain, settings)
    console.print(
        f"[green]✓[/] chain [bold]{escape(spec.name)}[/] v{spec.version} is valid "
        f"({len(spec.steps)} top-level steps)"
    )


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
    settings = load_settings()
    configure_logging(settings)
    from core.problems import InvalidInput
    from runs.checks import check_input

    spec = load_checked_chain(chain, settings)
    value = _read_input(input_json, input_file)
    try:
        check_input(spec, value)
    except InvalidInput as exc:
        print_problem_details(f"input does not match chain {spec.name!r}:", exc.details)
        raise typer.Exit(1) from None
    workflow_id = run_id or f"{spec.name}-{uuid.uuid4().hex[:12]}"
    code = asyncio.run(_run(settings, spec, value, workflow_id, max_cost, wait=not no_wait))
    raise typer.Exit(code)


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
            f"[yellow]warning:[/] no worker polls task queue {escape(repr(settings.task_queue))}; "
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

    from core.problems import RunConflict
    from core.temporal import TemporalConnectError, connect
    from runs.client import RunClient
    from runs.results import failure_message, partial_result

    try:
        client = await connect(settings)
    except TemporalConnectError as exc:
        fail(str(exc))
    await _warn_if_no_worker(client, settings)
    runs = RunClient(client, task_queue=settings.task_queue)
    try:
        started = await runs.start(
            spec, value, run_id=workflow_id, max_cost_usd=max_cost, checked=True
        )
    except RunConflict:
        fail(
            f"a run with id {workflow_id!r} already exists (run ids are never reused, "
            "even after a run closed); pick another --id"
        )
    handle = started.handle
    ns = settings.temporal_namespace
    ui = f"{settings.temporal_ui_url}/namespaces/{ns}/workflows/{workflow_id}"
    verb = (
        "started run"
        if started.created
        else "following the run already started with this id and input:"
    )
    err_console.print(f"{verb} [bold]{escape(workflow_id)}[/]  {escape(ui)}", highlight=False)
    if not wait:
        console.print(workflow_id, markup=False, highlight=False)
        return 0

    try:
        result = await _await_with_progress(handle, runs)
    except WorkflowFailureError as exc:
        partial = partial_result(exc)
        if partial is not None:
            render_result(partial)
        fail(f"run {workflow_id} failed: {failure_message(exc)}")
    render_result(result)
    return 0 if result.status == "completed" else 1


async def _await_with_progress(handle: Any, runs: Any = None) -> Any:
    """Wait for the result, showing the `state` query as a live table when
    stdout is a terminal, with what its model calls wait for (`runs`: the
    run client, which reads the retries Temporal has scheduled)."""
    result_task = asyncio.create_task(handle.result())
    if not console.is_terminal:
        return await result_task
    from temporalio.client import WorkflowQueryFailedError
    from temporalio.service import RPCError

    from core.names import STATE_QUERY
    from core.problems import TemporalUnavailable
    from workflows.types import RunState

    with Live(Text("starting…"), console=console, refresh_per_second=8, transient=True) as live:
        while not result_task.done():
            try:
                state = await handle.query(
                    STATE_QUERY, result_type=RunState, rpc_timeout=timedelta(seconds=2)
                )
                waits = await runs.waits(handle.id, state) if runs is not None else state.waits
                live.update(render_state(state, waits))
            except (RPCError, WorkflowQueryFailedError, TemporalUnavailable):
                pass  # not picked up by a worker yet: keep waiting
            await asyncio.wait({result_task}, timeout=_POLL_INTERVAL_S)
    return await result_task
