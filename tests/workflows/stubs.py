"""Stub activities under the real activity names, for the interpreter's logic
tests (samples-python `tests/hello/hello_activity_test.py` registers its mocks
the same way): scripted models, tools, a knowledge collection, the run index
and the audit log, each recording what the workflow asked of it. A `Harness`
runs them on a worker of its own and starts chains through the run client.

No simulator and no database: a run takes a fraction of a second on the
session's dev server.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.gateway.schema_check import check_json_output
from activities.gateway.types import (
    DescribeModelsInput,
    DescribeModelsResult,
    ModelCallInput,
    ModelCallResult,
    ModelInfo,
    ModelPrices,
    TokenUsage,
)
from activities.retrieval.types import RetrievalErrorType, RetrieveInput, RetrieveResult
from activities.tools.types import (
    DescribeToolsInput,
    DescribeToolsResult,
    ToolCallInput,
    ToolCallResult,
    ToolErrorType,
    ToolInfo,
)
from core.names import (
    CALL_MODEL,
    DESCRIBE_MODELS,
    DESCRIBE_TOOLS,
    RECORD_APPROVAL,
    RECORD_RUN,
    RETRIEVE,
    RUN_TOOL,
)
from core.passages import Passage
from core.records import ApprovalAuditInput, DecisionRecordInput, RunRecordInput
from runs.client import RunClient, StartedRun
from worker.assembly import create_worker
from workflows.types import ApprovalState, ChainResult
from workflows.validate import parse_chain

CHEAP = ModelPrices(input_per_mtok=0.1, output_per_mtok=0.1)
PRICES = {
    "pricey": ModelPrices(input_per_mtok=1000.0, output_per_mtok=1000.0),
    "metered": ModelPrices(input_per_mtok=0.0, output_per_mtok=1_000_000.0),
}
"""`pricey` costs a fortune; `metered` costs $1 an output token and nothing
for input, so its worst case is `max_tokens` dollars whatever the prompt.
Every other alias is cheap."""
DOWN = "down"
"""The alias whose provider always fails for good."""
SLOW = "slow"
"""The alias that does not answer until it is cancelled (or the worker stops)."""
USAGE = TokenUsage(input_tokens=10, output_tokens=1)
"""What every answer is billed for (so `metered` really costs $1 a call)."""
RETRY = {"max_attempts": 1, "initial_interval_s": 0.1, "backoff": 1.0}
"""Chains' default retry policy: a failed alias falls back at once."""
RUN_TIMEOUT_S = 30.0
"""A stubbed run that takes longer is stuck: fail the test, not the session."""
REVIEWER = {"reviewer": "alice", "reviewer_roles": ["reviewer"]}


def _lookup_order(arguments: dict[str, Any]) -> Any:
    return {"order_id": arguments["order_id"], "status": "shipped"}


def _refund(arguments: dict[str, Any]) -> Any:
    return {"refunded": arguments["amount"], "order_id": arguments["order_id"]}


def _broken(arguments: dict[str, Any]) -> Any:
    raise ApplicationError("the order system is down", type=ToolErrorType.FAILED)


def _tool(name: str, **policy: Any) -> ToolInfo:
    return ToolInfo(name=name, description=f"stub {name}", parameters={"type": "object"}, **policy)


TOOLS: dict[str, tuple[ToolInfo, Callable[[dict[str, Any]], Any]]] = {
    "lookup_order": (_tool("lookup_order"), _lookup_order),
    "refund": (_tool("refund", idempotent=False, requires_approval=True), _refund),
    "broken": (_tool("broken", max_attempts=1), _broken),
}
"""The stub tool registry: what the workflow may know, and what each tool does."""

COLLECTIONS = {
    "help": [
        Passage(
            id=f"refunds.md#{n}",
            document="refunds.md",
            source="docs/refunds.md",
            position=n,
            text=text,
            score=1.0 - n / 10,
        )
        for n, text in enumerate(
            ["Refunds take five days.", "Refunds go to the card.", "Ask support for more."]
        )
    ]
}
"""The stub knowledge store: collection → passages, best first."""


@dataclass
class Stubs:
    """Every stub activity, and what each was called with, in order."""

    replies: dict[str, list[str]] = field(default_factory=dict)
    model_calls: list[ModelCallInput] = field(default_factory=list)
    tool_calls: list[ToolCallInput] = field(default_factory=list)
    retrievals: list[RetrieveInput] = field(default_factory=list)
    run_records: list[RunRecordInput] = field(default_factory=list)
    audits: list[ApprovalAuditInput] = field(default_factory=list)
    slow_called: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the SLOW alias is waiting (its call is in flight)."""

    def script(self, alias: str, *replies: str) -> None:
        """`alias` answers `replies` in order; unscripted (or once its script
        runs out) it echoes the last message: `<alias>: <content>`."""
        self.replies.setdefault(alias, []).extend(replies)

    @property
    def aliases_called(self) -> list[str]:
        return [c.alias for c in self.model_calls]

    @property
    def activities(self) -> list[Callable[..., Any]]:
        return [
            self.describe_models,
            self.call_model,
            self.describe_tools,
            self.run_tool,
            self.retrieve,
            self.record_run,
            self.record_approval,
        ]

    @activity.defn(name=DESCRIBE_MODELS)
    async def describe_models(self, inp: DescribeModelsInput) -> DescribeModelsResult:
        return DescribeModelsResult(
            models={
                alias: ModelInfo(
                    alias=alias,
                    provider="stub",
                    model=f"stub-{alias}",
                    prices=PRICES.get(alias, CHEAP),
                    timeout_s=10,
                    heartbeat_timeout_s=10,
                )
                for alias in inp.aliases
            }
        )

    @activity.defn(name=CALL_MODEL)
    async def call_model(self, inp: ModelCallInput) -> ModelCallResult:
        self.model_calls.append(inp)
        if inp.alias == DOWN:
            raise ApplicationError("provider down", type="ProviderError", non_retryable=True)
        if inp.alias == SLOW:
            self.slow_called.set()
            await asyncio.sleep(RUN_TIMEOUT_S)
        script = self.replies.get(inp.alias)
        text = script.pop(0) if script else f"{inp.alias}: {inp.messages[-1].content}"
        parsed, errors = (
            check_json_output(text, inp.json_schema) if inp.json_schema else (None, None)
        )
        return ModelCallResult(
            alias=inp.alias,
            provider="stub",
            model=f"stub-{inp.alias}",
            text=text,
            parsed=parsed,
            schema_errors=errors,
            usage=USAGE,
            cost_usd=PRICES.get(inp.alias, CHEAP).cost(USAGE),
            latency_ms=1.0,
        )

    @activity.defn(name=DESCRIBE_TOOLS)
    async def describe_tools(self, inp: DescribeToolsInput) -> DescribeToolsResult:
        return DescribeToolsResult(
            tools={name: TOOLS[name][0] for name in inp.names if name in TOOLS},
            unknown=[name for name in inp.names if name not in TOOLS],
        )

    @activity.defn(name=RUN_TOOL)
    async def run_tool(self, inp: ToolCallInput) -> ToolCallResult:
        self.tool_calls.append(inp)
        _, run = TOOLS[inp.tool]
        return ToolCallResult(tool=inp.tool, output=run(inp.arguments), latency_ms=1.0)

    @activity.defn(name=RETRIEVE)
    async def retrieve(self, inp: RetrieveInput) -> RetrieveResult:
        self.retrievals.append(inp)
        if inp.collection not in COLLECTIONS:
            raise ApplicationError(
                f"no collection {inp.collection!r}",
                type=RetrievalErrorType.UNKNOWN_COLLECTION,
                non_retryable=True,
            )
        passages = COLLECTIONS[inp.collection][: inp.top_k]
        return RetrieveResult(
            collection=inp.collection, query=inp.query, ranking="fts", passages=passages
        )

    @activity.defn(name=RECORD_RUN)
    async def record_run(self, record: RunRecordInput) -> None:
        self.run_records.append(record)

    @activity.defn(name=RECORD_APPROVAL)
    async def record_approval(self, entry: DecisionRecordInput) -> None:
        # A chain run's decision carries the index row it changes: the
        # database takes both, so `run_records` does too.
        self.audits.append(entry.audit())
        if entry.run_record is not None:
            self.run_records.append(entry.run_record)


class Harness:
    """Starts chains through the run client on a task queue served by a
    worker over `stubs`."""

    def __init__(self, env: WorkflowEnvironment, task_queue: str) -> None:
        self.stubs = Stubs()
        self.runs = RunClient(env.client, task_queue=task_queue)

    async def start(
        self, steps: list[dict[str, Any]], value: Any = None, **limits: Any
    ) -> StartedRun:
        spec = parse_chain({"name": "stubbed", "defaults": RETRY, "limits": limits, "steps": steps})
        return await self.runs.start(spec, value, run_id=f"stubbed-{uuid.uuid4()}")

    async def result(
        self, steps: list[dict[str, Any]], value: Any = None, **limits: Any
    ) -> ChainResult:
        started = await self.start(steps, value, **limits)
        return await self.finish(started)

    @staticmethod
    async def finish(started: StartedRun) -> ChainResult:
        return await asyncio.wait_for(started.handle.result(), RUN_TIMEOUT_S)

    async def failure(
        self, steps: list[dict[str, Any]], value: Any = None, **limits: Any
    ) -> tuple[ApplicationError, ChainResult]:
        """The error a failed run raised, and the partial result it carries."""
        with pytest.raises(WorkflowFailureError) as caught:
            await self.result(steps, value, **limits)
        cause = caught.value.cause
        assert isinstance(cause, ApplicationError)
        return cause, ChainResult.model_validate(cause.details[0])

    async def pending(self, started: StartedRun) -> ApprovalState:
        """The one approval the run waits for, once it asks."""
        async with asyncio.timeout(RUN_TIMEOUT_S):
            while True:
                pending = await self.runs.pending_approvals(started.run_id)
                if pending:
                    [approval] = pending
                    return approval
                await asyncio.sleep(0.02)

    async def decide(
        self, started: StartedRun, approval: ApprovalState, decision: str = "approve", **fields: Any
    ) -> None:
        await self.runs.decide(
            started.run_id,
            approval_id=approval.approval_id,
            decision=decision,
            payload_hash=approval.payload_hash,
            **{**REVIEWER, **fields},
        )


@asynccontextmanager
async def stub_harness(env: WorkflowEnvironment, task_queue: str) -> AsyncIterator[Harness]:
    harness = Harness(env, task_queue)
    async with create_worker(
        env.client, task_queue=task_queue, activities=harness.stubs.activities
    ):
        yield harness


def model(name: str, alias: str, prompt: str = "Hi", **extra: Any) -> dict[str, Any]:
    """A model step of a chain document."""
    return {
        "name": name,
        "kind": "model",
        "model": alias,
        "prompt": prompt,
        "max_tokens": 50,
        **extra,
    }


def purposes(result: ChainResult, step: str) -> list[tuple[str, str, str]]:
    """(alias, purpose, outcome) of each call a step made, in order."""
    return [(c.alias, c.purpose, c.outcome) for c in result.steps[step].calls]
