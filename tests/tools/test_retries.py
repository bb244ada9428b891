"""Tool retries through a real Temporal worker: an idempotent tool is retried
until it succeeds, a non-idempotent one runs once unless it has an
idempotency key, a timeout is retried, and a failing tool reaches the
workflow as a typed error while the worker goes on serving."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.tools.activities import ToolActivities
from activities.tools.builtin import OrderDesk, register_builtin_tools
from activities.tools.order_ledger import Refund
from activities.tools.registry import ToolRegistry
from activities.tools.types import ToolErrorType
from tests.tools.retry_workflow import ToolRetryTestWorkflow, ToolRunInput, ToolRunReport
from worker.plugin import sandbox_runner

ATTEMPTS: dict[str, list[int]] = defaultdict(list)
"""Attempt numbers each test's tools saw, by the test's token."""


def _seen(token: str) -> int:
    attempt = activity.info().attempt
    ATTEMPTS[token].append(attempt)
    return attempt


def make_registry(desk: OrderDesk) -> ToolRegistry:
    registry = ToolRegistry()
    register_builtin_tools(registry, desk)

    @registry.tool(max_attempts=3)
    async def flaky(token: str) -> str:
        """Idempotent; fails on its first two attempts."""
        if _seen(token) < 3:
            raise RuntimeError("flaky backend")
        return "ok"

    @registry.tool(idempotent=False, max_attempts=3)
    async def flaky_write(token: str, idempotency_key: str | None = None) -> str:
        """Not idempotent; fails on its first two attempts."""
        if _seen(token) < 3:
            raise RuntimeError("write failed")
        return f"written with {idempotency_key}"

    @registry.tool(timeout_s=0.3)
    async def slow_first(token: str) -> str:
        """Hangs past its timeout on the first attempt only."""
        if _seen(token) == 1:
            await asyncio.sleep(5)
        return "fast now"

    @registry.tool(max_attempts=2)
    async def always_fails(token: str) -> None:
        """Fails every time."""
        _seen(token)
        raise ValueError("the ledger service is down")

    @registry.tool(idempotent=False, requires_approval=True)
    def refund_then_drop(
        token: str, order_id: str, amount: float, idempotency_key: str | None = None
    ) -> Refund:
        """Issues a refund, then loses the answer on the first attempt (as a
        dropped connection would)."""
        attempt = _seen(token)
        refund = desk.issue_refund(order_id, amount, "late delivery", idempotency_key)
        if attempt == 1:
            raise ConnectionResetError("connection reset after the refund was issued")
        return refund

    return registry


TEST_TOOLS = frozenset({"flaky", "flaky_write", "slow_first", "always_fails", "refund_then_drop"})


class Harness:
    def __init__(self, client: Client, task_queue: str, desk: OrderDesk) -> None:
        self.client = client
        self.task_queue = task_queue
        self.desk = desk
        self.token = f"t-{uuid.uuid4()}"

    @property
    def attempts(self) -> list[int]:
        return ATTEMPTS[self.token]

    async def run(self, tool: str, key: str | None = None, **arguments: Any) -> ToolRunReport:
        if tool in TEST_TOOLS:
            arguments["token"] = self.token
        return await self.client.execute_workflow(
            ToolRetryTestWorkflow.run,
            ToolRunInput(tool=tool, arguments=arguments, idempotency_key=key),
            id=f"tool-retry-{uuid.uuid4()}",
            task_queue=self.task_queue,
        )


@pytest.fixture
async def harness(
    temporal_env: WorkflowEnvironment, task_queue: str, http: httpx.AsyncClient
) -> AsyncIterator[Harness]:
    desk = OrderDesk()
    acts = ToolActivities(make_registry(desk), http)
    async with Worker(
        temporal_env.client,
        task_queue=task_queue,
        workflows=[ToolRetryTestWorkflow],
        activities=list(acts.activities),
        workflow_runner=sandbox_runner(),
    ):
        yield Harness(temporal_env.client, task_queue, desk)
    desk.close()


async def test_an_idempotent_tool_is_retried_until_it_succeeds(harness: Harness) -> None:
    report = await harness.run("flaky")
    assert report.ok and report.output == "ok"
    assert report.max_attempts == 3
    assert harness.attempts == [1, 2, 3]


async def test_a_non_idempotent_tool_without_a_key_runs_once(harness: Harness) -> None:
    report = await harness.run("flaky_write")
    assert not report.ok
    assert report.max_attempts == 1
    assert harness.attempts == [1]  # not retried, though the error was retryable
    assert report.error_type == ToolErrorType.FAILED and report.non_retryable is False
    assert report.retry_state == "MAXIMUM_ATTEMPTS_REACHED"
    assert report.message == "tool 'flaky_write' failed: RuntimeError: write failed"


async def test_the_same_tool_with_a_key_is_retried(harness: Harness) -> None:
    report = await harness.run("flaky_write", "ticket-42-write")
    assert report.ok and report.output == "written with ticket-42-write"
    assert report.max_attempts == 3
    assert harness.attempts == [1, 2, 3]


async def test_a_timed_out_attempt_is_retried(harness: Harness) -> None:
    report = await harness.run("slow_first")
    assert report.ok and report.output == "fast now"
    assert harness.attempts == [1, 2]


async def test_a_failing_tool_is_a_typed_error_and_the_worker_lives_on(harness: Harness) -> None:
    report = await harness.run("always_fails")
    assert not report.ok
    assert report.error_type == ToolErrorType.FAILED
    assert report.message == "tool 'always_fails' failed: ValueError: the ledger service is down"
    assert report.retry_state == "MAXIMUM_ATTEMPTS_REACHED"
    assert harness.attempts == [1, 2]

    unknown = await harness.run("lookup_order", order_id="NW-12")  # a bad argument: final
    assert unknown.error_type == ToolErrorType.INVALID_ARGUMENTS
    assert unknown.retry_state == "NON_RETRYABLE_FAILURE"

    after = await harness.run("lookup_order", order_id="NW-1006")  # same worker, still serving
    assert after.ok and after.output["order"]["status"] == "out_for_delivery"


async def test_a_keyed_refund_retried_after_a_lost_answer_is_paid_once(
    harness: Harness,
) -> None:
    report = await harness.run("refund_then_drop", "ticket-7-refund", order_id="NW-1002", amount=18)
    assert report.ok
    assert harness.attempts == [1, 2]
    assert report.output["refund_id"] == "RF-00001" and report.output["duplicate"] is True
    assert [(r.order_id, r.amount) for r in harness.desk.refunds] == [("NW-1002", 18.0)]


async def test_a_refund_over_the_total_is_not_retried(harness: Harness) -> None:
    report = await harness.run("issue_refund", "k", order_id="NW-1008", amount=500, reason="why")
    assert report.error_type == ToolErrorType.FAILED and report.non_retryable
    assert report.retry_state == "NON_RETRYABLE_FAILURE"
    assert "exceeds what order NW-1008 can still refund" in (report.message or "")
    assert harness.desk.refunds == []
