"""Fixtures for chain runs against a real Temporal dev server and the simulator."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from activities.gateway.registry import ModelRegistry
from core.chain_spec import ChainSpec
from runs.client import RunClient
from tests.conftest import activity_host
from worker.assembly import hosted_worker
from workflows.types import ChainResult
from workflows.validate import check_chain, parse_chain, parse_chain_yaml

ROOT = Path(__file__).resolve().parents[2]
MODELS_FILE = ROOT / "chains" / "models.yaml"
FAST_RETRY = {"max_attempts": 3, "initial_interval_s": 0.1, "backoff": 1.0}


def load_spec(data: dict[str, Any] | str, registry: ModelRegistry) -> ChainSpec:
    spec = parse_chain_yaml(data) if isinstance(data, str) else parse_chain(data)
    check_chain(spec, registry.aliases)
    return spec


def shipped_chain(name: str, registry: ModelRegistry) -> ChainSpec:
    return load_spec((ROOT / "chains" / f"{name}.yaml").read_text(), registry)


class ChainRunner:
    """Starts chain runs on this test's task queue and reads their outcome."""

    def __init__(self, client: Client, task_queue: str) -> None:
        self.client = client
        self.task_queue = task_queue

    async def start(
        self, spec: ChainSpec, value: Any, *, max_cost_usd: float | None = None
    ) -> WorkflowHandle[Any, ChainResult]:
        return (
            await RunClient(self.client, task_queue=self.task_queue).start(
                spec, value, run_id=f"test-{spec.name}-{uuid.uuid4()}", max_cost_usd=max_cost_usd
            )
        ).handle

    async def run(self, spec: ChainSpec, value: Any, **kwargs: Any) -> ChainResult:
        handle = await self.start(spec, value, **kwargs)
        return await handle.result()

    async def run_failing(
        self, spec: ChainSpec, value: Any, **kwargs: Any
    ) -> tuple[ApplicationError, ChainResult, str]:
        """Run a chain that must fail; return its error, partial result and workflow id."""
        handle = await self.start(spec, value, **kwargs)
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        cause = caught.value.cause
        assert isinstance(cause, ApplicationError), cause
        partial = ChainResult.model_validate(cause.details[0])
        return cause, partial, handle.id


@pytest.fixture
def order_desk() -> Any:
    """The sample order desk the builtin tools work on (tests inspect its refunds)."""
    from activities.tools.builtin import OrderDesk

    desk = OrderDesk()
    yield desk
    desk.close()


@pytest.fixture
async def runner(
    temporal_env: Any,
    registry: ModelRegistry,
    task_queue: str,
    store_engine: Any,
    order_desk: Any,
) -> AsyncIterator[ChainRunner]:
    host = activity_host(registry, store_engine, order_desk)
    async with hosted_worker(temporal_env.client, host, task_queue=task_queue):
        yield ChainRunner(temporal_env.client, task_queue)
