"""Worker assembly: which workflows and activities a Chorus worker hosts.

Kept apart from the CLI so tests, benchmarks and `chorus worker` build the
exact same worker.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from workflows.agent import AgentWorkflow
from workflows.chain import ChainWorkflow

if TYPE_CHECKING:
    from activities.gateway.activities import ModelGateway
    from activities.records.activities import RecordActivities
    from worker.settings import Settings

WORKFLOWS: Sequence[type] = (ChainWorkflow, AgentWorkflow)

PASSTHROUGH_MODULES = (
    # Deterministic modules shared by every run instead of being re-imported
    # into each workflow's sandbox (the sdk README's "Sandbox Performance").
    "jinja2",
    "markupsafe",
    "pydantic",
    "pydantic_core",
    "activities.gateway.types",
    "workflows.spec",
    "workflows.types",
    "workflows.budget",
    "workflows.templating",
    "workflows.search_attributes",
    # Guards validate JSON schemas inside workflows: jsonschema and what it
    # imports (re-importing them per run costs ~0.3 s of worker CPU).
    "workflows.guards",
    "jsonschema",
    "jsonschema_specifications",
    "referencing",
    "rpds",
    "attr",
    "attrs",
    "idna",
)


def sandbox_runner() -> SandboxedWorkflowRunner:
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


def create_worker(
    client: Client,
    *,
    task_queue: str,
    activities: Sequence[Callable[..., Any]],
    max_cached_workflows: int = 1000,
    max_concurrent_activities: int = 200,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=list(activities),
        max_cached_workflows=max_cached_workflows,
        max_concurrent_activities=max_concurrent_activities,
        workflow_runner=sandbox_runner(),
    )


def build_worker(
    client: Client,
    settings: Settings,
    gateway: ModelGateway,
    records: RecordActivities,
    *,
    task_queue: str | None = None,
) -> Worker:
    return create_worker(
        client,
        task_queue=task_queue or settings.task_queue,
        activities=[*gateway.activities, *records.activities],
        max_cached_workflows=settings.max_cached_workflows,
        max_concurrent_activities=settings.max_concurrent_activities,
    )


def build_gateway(settings: Settings) -> ModelGateway:
    from activities.gateway.activities import ModelGateway
    from activities.gateway.registry import ModelRegistry

    registry = ModelRegistry.from_file(
        settings.models_file, simulator_base_url=settings.simulator_base_url
    )
    return ModelGateway(registry)


def build_records(settings: Settings) -> RecordActivities:
    """The run index and audit log writers, on the application database."""
    from activities.records.activities import RecordActivities
    from store.engine import create_all, make_engine

    engine = make_engine(settings.effective_database_url)
    create_all(engine)
    return RecordActivities(engine)


async def run_worker(settings: Settings) -> None:
    """Run a worker until SIGINT/SIGTERM, then drain and close cleanly (an
    abrupt exit with SDK threads alive can abort the interpreter)."""
    from worker.temporal_client import connect

    client = await connect(settings)
    gateway = build_gateway(settings)
    worker = build_worker(client, settings, gateway, build_records(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with worker:
            await stop.wait()
    finally:
        await gateway.aclose()
